"""The leaderboard service over GraphQL (see schema.graphql and docs/leaderboards.md, GraphQL)."""
