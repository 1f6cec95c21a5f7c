"""A revoked credential stops working in every web process: an API key the moment its revocation is
answered, whichever process answered it. Each test revokes through one process of the WebPair and
watches the other."""
from __future__ import annotations

import uuid

from tests.e2e.conftest import WebPair
from tests.helpers import Api, HttpClient


def test_a_revoked_api_key_is_refused_by_every_web_process_at_once(web_pair: WebPair):
    first, second = Api(HttpClient(web_pair.url(0))), Api(HttpClient(web_pair.url(1)))
    owner = first.host()
    board_id = "rk-" + uuid.uuid4().hex[:10]
    first.post("/api/v1/leaderboards", {"id": board_id, "name": "Revoked", "sort_order": "desc",
                                        "update_mode": "best", "reset_period": "never"}, token=owner.token, expect=201)
    key = first.post("/api/v1/api-keys", {"name": "game server"}, token=owner.token, expect=201).get_json()
    score = {"leaderboard_id": board_id, "player_id": "p1", "score": 1}
    second.post("/api/v1/scores", score, token=key["key"], expect=201)  # the second process has checked the key
    first.delete(f"/api/v1/api-keys/{key['id']}", token=owner.token, expect=204)
    refused = second.post("/api/v1/scores", {**score, "score": 2}, token=key["key"], expect=401).get_json()
    assert "revoked" in refused["error"]["message"]
    first.delete(f"/api/v1/api-keys/{key['id']}", token=owner.token, expect=404)  # revoked already
