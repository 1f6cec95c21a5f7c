"""The cluster's balancer checks access tokens at the edge (scripts/haproxy.cfg, docs/gateways.md): every
forged, broken or expired token, or none, on a route that needs one is refused with the service's own
401 before any web sees the request; API keys, public routes, pages, sockets and valid tokens pass.

Each algorithm gets a web of its own (one gunicorn worker, logging every request) behind a balancer of
its own, keyed by `python -m app.web.edge`'s files as `make up-cluster` keys the cluster's.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from itsdangerous import URLSafeTimedSerializer

from app.core.config import Config
from scripts.stack.programs import AppStack
from scripts.stack.supervisor import MANUAL
from tests.helpers import (
    Api,
    HttpClient,
    free_port,
    stack_env,
    wait_until,
)
from tests.live_stack import start_balancer
from tests.token_attacks import NO_TOKEN, attacks

QUERY = {"query": "query { leaderboard { score user_id user_name } }"}  # seed 000, anonymous


@dataclass
class Edge:
    config: Config
    url: str  # the balancer
    web_url: str  # the web itself
    web_log: Path

    def send(self, base: str, method: str, path: str, token: str | None, request_id: str, **kwargs):
        headers = {"X-Request-ID": request_id}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, base + path, headers=headers, timeout=30, **kwargs)

    def logged(self, request_id: str) -> bool:
        return request_id in self.web_log.read_text(errors="replace")


@pytest.fixture(scope="module", params=["HS256", "ES256"])
def edge(request, database, kafka_topics, redis_client, tmp_path_factory):
    config = kafka_topics.replace(jwt_algorithm=request.param)
    logs = tmp_path_factory.mktemp(f"edge-{request.param}")
    web_port, lb_port = free_port(), free_port()
    env = stack_env(config, WEB_PORT=str(web_port), WEB_WORKERS="1", WEB_TRUSTED_PROXIES="1",
                    LOG_LEVEL="info")
    apps = AppStack(logs, env, MANUAL)
    try:
        apps.start("web")
        start_balancer(apps, lb_port, {"web": web_port}, config)
        wait_until(lambda: _upstream(f"http://127.0.0.1:{lb_port}/healthz"),
                   "the balancer did not reach the web", every_s=0.2)
        yield Edge(config, f"http://127.0.0.1:{lb_port}", f"http://127.0.0.1:{web_port}", logs / "web.log")
    finally:
        apps.close()


def _upstream(url: str) -> str | None:
    try:
        return requests.get(url, timeout=2).headers.get("X-Upstream")
    except requests.RequestException:
        return None


def _seen_by_a_web(response) -> bool:
    return "X-Upstream" in response.headers  # set on what a web answered, never on the edge's own answers


def test_the_edge_refuses_every_bad_token_with_the_services_own_401_before_the_web_sees_it(edge: Edge):
    host = Api(HttpClient(edge.web_url)).host()
    cases = {name: token for name, (token, _) in attacks(edge.config, host.user_id).items()}
    cases["missing"] = None
    refused_ids = []
    for name, token in cases.items():
        for method, path, body in (("GET", "/api/v1/auth/me", None),
                                   ("POST", "/api/v1/quizzes", {"title": "t"}), ("POST", "/graphql", QUERY)):
            if path == "/graphql" and token is None:
                continue  # anonymous GraphQL is public (seed 000's operations)
            at_edge_id, direct_id = f"edge-{uuid.uuid4().hex}", f"direct-{uuid.uuid4().hex}"
            at_edge = edge.send(edge.url, method, path, token, at_edge_id, json=body)
            direct = edge.send(edge.web_url, method, path, token, direct_id, json=body)
            assert (at_edge.status_code, at_edge.json()) == (401, direct.json()), (name, method, path)
            assert direct.status_code == 401 and not _seen_by_a_web(at_edge), (name, path)
            assert at_edge.headers["Content-Type"] == "application/json"
            refused_ids.append(at_edge_id)
    assert edge.send(edge.url, "GET", "/api/v1/auth/me", None,
                     "no-token").json()["error"]["message"] == NO_TOKEN

    # A request the edge passes after all of them: once the web has logged it, it has logged whatever
    # came before it, and none of the refused ones is there.
    marker = f"after-{uuid.uuid4().hex}"
    passed = edge.send(edge.url, "GET", "/api/v1/auth/me", host.token, marker)
    assert passed.status_code == 200 and _seen_by_a_web(passed)
    wait_until(lambda: edge.logged(marker), "the web did not log the request the edge passed")
    assert [request_id for request_id in refused_ids if edge.logged(request_id)] == []


def test_the_edge_passes_api_keys_public_routes_pages_sockets_and_valid_tokens(edge: Edge):
    api = Api(HttpClient(edge.url))
    host = api.host()  # sign-up and sign-in are public; the token passes the edge
    board_id = "edge-" + uuid.uuid4().hex[:10]
    api.post("/api/v1/leaderboards", {"id": board_id, "name": "Edge", "sort_order": "desc",
                                      "update_mode": "best", "reset_period": "never"},
             token=host.token, expect=201)
    key = api.post("/api/v1/api-keys", {"name": "game server"}, token=host.token,
                   expect=201).get_json()["key"]
    passed = {
        "api key": edge.send(edge.url, "POST", "/api/v1/scores", key, "k",
                             json={"leaderboard_id": board_id, "player_id": "p1", "score": 5}),
        "unknown api key": edge.send(edge.url, "POST", "/api/v1/scores", "lbk_not-a-key", "k2", json={}),
        "public read": edge.send(edge.url, "GET", f"/api/v1/leaderboards/{board_id}/top", None, "r"),
        "anonymous graphql": edge.send(edge.url, "POST", "/graphql", None, "g", json=QUERY),
        "page": edge.send(edge.url, "GET", "/", None, "p"),
        "jwks": edge.send(edge.url, "GET", "/.well-known/jwks.json", None, "j"),
        "socket": edge.send(edge.url, "GET", f"/ws/sessions/{uuid.uuid4()}?ticket=nope", None, "s"),
    }
    assert {name: _seen_by_a_web(response)
            for name, response in passed.items()} == dict.fromkeys(passed, True)
    assert passed["api key"].status_code == 201 and passed["public read"].status_code == 200
    assert passed["unknown api key"].json()["error"]["message"] == "unknown or revoked API key"
    assert passed["anonymous graphql"].status_code == 200 and passed["page"].status_code == 200
    assert passed["jwks"].json() == requests.get(edge.web_url + "/.well-known/jwks.json", timeout=30).json()

    # A logout is the service's to know: the edge passes the revoked token, the service refuses it.
    api.post("/api/v1/auth/logout", token=host.token, expect=204)
    revoked = edge.send(edge.url, "GET", "/api/v1/auth/me", host.token, "revoked")
    assert revoked.status_code == 401 and _seen_by_a_web(revoked)
    assert revoked.json()["error"]["message"] == "token revoked (signed out)"


def test_a_token_from_before_jwts_is_refused_at_the_edge_though_the_service_still_reads_it(edge: Edge):
    host = Api(HttpClient(edge.web_url)).host()
    before = URLSafeTimedSerializer(edge.config.secret_key, salt="livequiz.access-token").dumps(
        {"u": host.user_id, "g": False, "i": time.time_ns() // 1_000_000})
    assert edge.send(edge.web_url, "GET", "/api/v1/auth/me", before, "old-direct").status_code == 200
    at_edge = edge.send(edge.url, "GET", "/api/v1/auth/me", before, "old-edge")
    assert (at_edge.status_code, at_edge.json()["error"]["message"]) == (401, "token invalid")
