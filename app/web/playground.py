"""Seed 000's GraphQL playground: GraphiQL at `GET /graphql` for a browser (a request that accepts
text/html before JSON), on the same origin as the API it explores, under the project's CSP.

GraphiQL and the React it runs on come from npm by the lock (package.json, package-lock.json at the
root; `scripts/deps.sh` runs `npm ci`), and only the four files named in VENDORED are served,
from node_modules, never from a CDN. GRAPHQL_PLAYGROUND=0 turns the page and its files off: GET /graphql
then answers 405 as it does to any client that is not a browser (POST a query instead).
"""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from flask import (
    Blueprint,
    current_app,
    make_response,
    render_template,
    request,
    send_from_directory,
)
from werkzeug.exceptions import MethodNotAllowed, NotFound

from app.core.errors import Unavailable
from app.web.headers import PLAYGROUND_CSP

NODE_MODULES = Path(__file__).resolve().parents[2] / "node_modules"
# name in the URL -> (npm package, file inside it): the production builds GraphiQL's own page loads.
VENDORED = {
    "react.js": ("react", "umd/react.production.min.js"),
    "react-dom.js": ("react-dom", "umd/react-dom.production.min.js"),
    "graphiql.js": ("graphiql", "graphiql.min.js"),
    "graphiql.css": ("graphiql", "graphiql.min.css"),
}
ASSET_MAX_AGE_S = 365 * 86400  # each URL names its package's version: a new version is a new URL
DEFAULT_QUERY = """# Seed 000's operations run here with no token. The others take the REST API's credentials:
# under Headers, {"Authorization": "Bearer <access token or API key>"}.
query {
  leaderboard {
    score
    user_id
    user_name
  }
}
"""

bp = Blueprint("playground", __name__)


def _enabled() -> bool:
    return current_app.config["LIVEQUIZ"].graphql_playground


@cache
def _versions() -> dict[str, str] | None:
    """{package: installed version} of the vendored packages; None while any of their files is missing."""
    if not all((NODE_MODULES / package / path).is_file() for package, path in VENDORED.values()):
        return None
    return {package: json.loads((NODE_MODULES / package / "package.json").read_text())["version"]
            for package, _ in VENDORED.values()}


def _installed_versions() -> dict[str, str]:
    versions = _versions()
    if versions is None:
        _versions.cache_clear()  # looked for again next time: `npm ci` may run while the process does
        raise Unavailable("unavailable", "the GraphQL playground's files are not installed (npm ci)")
    return versions


@bp.get("/graphql")
def graphiql():
    wants_page = request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"
    if not _enabled() or not wants_page:
        raise MethodNotAllowed(valid_methods=["POST"], description="POST a GraphQL query to /graphql")
    versions = _installed_versions()
    assets = {name: f"/graphql/assets/{name}?v={versions[package]}"
              for name, (package, _) in VENDORED.items()}
    response = make_response(render_template("graphiql.html", assets=assets, default_query=DEFAULT_QUERY))
    response.headers["Content-Security-Policy"] = PLAYGROUND_CSP
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/graphql/assets/<name>")
def graphiql_asset(name: str):
    if not _enabled() or name not in VENDORED:
        raise NotFound()
    _installed_versions()
    package, path = VENDORED[name]
    return send_from_directory(NODE_MODULES / package, path, max_age=ASSET_MAX_AGE_S)
