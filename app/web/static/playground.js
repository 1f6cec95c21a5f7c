// Seed 000's GraphQL playground (app/web/playground.py): GraphiQL on this service's own /graphql, queries
// and mutations over HTTP, subscriptions over its graphql-transport-ws socket. No inline script: the
// page runs under the project's Content-Security-Policy.
const root = document.getElementById("graphiql");
const endpoint = new URL(root.dataset.endpoint, location.href);
const socket = new URL(endpoint);
socket.protocol = location.protocol === "https:" ? "wss:" : "ws:";
const fetcher = GraphiQL.createFetcher({ url: endpoint.href, subscriptionUrl: socket.href });
ReactDOM.createRoot(root).render(
  React.createElement(GraphiQL, { fetcher, defaultQuery: root.dataset.defaultQuery }),
);
