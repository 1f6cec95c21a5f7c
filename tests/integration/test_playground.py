"""GET /graphql: GraphiQL's page for a browser, under the project's CSP (fonts as data: URLs added), its
files from node_modules (npm ci) and no others; JSON clients and GRAPHQL_PLAYGROUND=0 get 405 as before.
The page itself runs in a browser in tests/e2e/test_browser_graphiql.py."""
from __future__ import annotations

import re

from app import create_app
from app.web.headers import CONTENT_SECURITY_POLICY

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def test_a_browser_gets_graphiql_under_the_csp_and_other_clients_get_405(client):
    page = client.get("/graphql", headers=BROWSER)
    assert page.status_code == 200 and page.mimetype == "text/html"
    policy = page.headers["Content-Security-Policy"]
    assert policy == CONTENT_SECURITY_POLICY.replace("font-src 'self'", "font-src 'self' data:")
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
    html = page.get_data(as_text=True)
    assets = [part.split('"')[0] for part in html.split('="/graphql/assets/')[1:]]
    assert sorted(a.split("?")[0] for a in assets) == ["graphiql.css", "graphiql.js", "react-dom.js",
                                                       "react.js"]
    assert "<script>" not in html  # no inline script
    # no CDN
    assert all(url.startswith(("/", "data:")) for url in re.findall(r'(?:src|href)="([^"]*)"', html))
    for asset in assets:
        served = client.get(f"/graphql/assets/{asset}")
        assert served.status_code == 200 and len(served.data) > 1000, asset
        assert served.headers["X-Content-Type-Options"] == "nosniff"
    for other in ("package.json", "..%2Fpackage.json", "graphiql.js.map", "react.development.js"):
        assert client.get(f"/graphql/assets/{other}").status_code == 404
    for accept in ({"Accept": "application/json"}, {"Accept": "*/*"}, {}):
        refused = client.get("/graphql", headers=accept)
        assert refused.status_code == 405 and refused.headers["Allow"] == "POST"
        assert refused.get_json()["error"]["code"] == "method_not_allowed"


def test_graphql_playground_0_turns_the_page_and_its_files_off(config):
    off = create_app(config.replace(graphql_playground=False)).test_client()
    assert off.get("/graphql", headers=BROWSER).status_code == 405
    assert off.get("/graphql/assets/graphiql.js").status_code == 404
    assert off.post("/graphql", json={"query": "{ __typename }"}).get_json() \
        == {"data": {"__typename": "Query"}}
