"""The edge's files (app/web/edge.py): the API routes open to anyone, and the key the edge checks with."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from app import create_app
from app.accounts.tokens import shared_secret, token_keys
from app.core.config import load_config
from app.web.api.core import ROUTE_DOCS
from app.web.edge import public_routes, write_edge_files


@pytest.fixture(scope="module")
def app():
    return create_app(load_config({"SECRET_KEY": "s" * 40}))


def _request_line(method: str, rule: str) -> str:
    return f"{method} " + re.sub(r"<[^>]+>", "some%20id", rule)


def test_a_route_is_open_at_the_edge_exactly_when_the_service_asks_no_token(app):
    patterns = [re.compile(line) for line in public_routes(app)]

    def open_at_edge(line: str) -> bool:
        return any(p.search(line) for p in patterns)

    for doc in ROUTE_DOCS:
        for method in doc.methods + (["HEAD"] if doc.methods == ["GET"] else []):
            assert open_at_edge(_request_line(method, doc.rule)) is not doc.auth, (method, doc.rule)
    assert open_at_edge("GET /api/v1/openapi.json") and open_at_edge("OPTIONS /api/v1/quizzes")
    # A route nobody listed, or a path spelled so no rule matches it, is guarded, never open.
    assert not open_at_edge("GET /api/v1/not-yet-a-route")
    assert not open_at_edge("GET /api/v1/leaderboards/x/top/extra")
    assert not open_at_edge("GET /api/v1/leader%62oards/x/top")


@pytest.mark.parametrize("algorithm", ["HS256", "ES256"])
def test_the_edge_gets_the_key_that_verifies_the_webs_tokens(app, tmp_path, algorithm):
    config = load_config({"SECRET_KEY": "s" * 40, "JWT_ALGORITHM": algorithm})
    env = write_edge_files(config, app, tmp_path)
    assert env["LB_JWT_ALG"] == algorithm and env["LB_API_KEY_PREFIX"] == "lbk_"
    written = dict(line.split("=", 1) for line in (tmp_path / "haproxy.env").read_text().splitlines())
    assert written == env and (tmp_path / "haproxy.env").stat().st_mode & 0o077 == 0
    if algorithm == "ES256":
        assert Path(env["LB_JWT_KEY"]).read_bytes() == token_keys(config).public_pem()
    else:
        assert env["LB_JWT_KEY"] == shared_secret(config.secret_key)
