"""A period on the live surfaces through the running processes: board sockets (updates, standings, the
final standings of a closing period) and GraphQL subscriptions show its bounds in the board's time
zone and its label, as the REST reads do."""
from __future__ import annotations

import uuid

from tests.e2e.room_client import SocketClient
from tests.helpers import Api, HttpClient, wait_until

SPAN_FIELDS = ("starts_at", "ends_at", "label")


def _span(view: dict) -> dict:
    return {k: view[k] for k in SPAN_FIELDS}


def test_sockets_and_subscriptions_show_each_periods_span(live_stack):
    http = Api(HttpClient(live_stack.base_url))
    owner = http.host()
    board_id = "span-" + uuid.uuid4().hex[:10]
    base = f"/api/v1/leaderboards/{board_id}"
    http.post("/api/v1/leaderboards", {"id": board_id, "name": "Kathmandu", "sort_order": "desc",
                                       "update_mode": "best", "reset_period": "daily",
                                       "timezone": "Asia/Kathmandu"}, token=owner.token, expect=201)
    http.post("/api/v1/scores/batch", {"scores": [{"leaderboard_id": board_id, "player_id": p, "score": s}
                                                  for p, s in (("ann", 30), ("bob", 20))]},
              token=owner.token, expect=200)
    wait_until(lambda: http.get(f"{base}/top", expect=200).get_json()["total"] == 2,
               "the scores never reached the board")
    first = http.get(f"{base}/periods", expect=200).get_json()["periods"][0]
    assert first["starts_at"].endswith("+05:45")

    watcher = SocketClient(f"{live_stack.ws_url}/ws/leaderboards/{board_id}?player=bob")
    graphql = SocketClient(f"{live_stack.ws_url}/graphql", subprotocols=["graphql-transport-ws"])
    try:
        assert _span(watcher.wait_type("leaderboard_update")) == _span(first)
        assert _span(watcher.wait_type("standing")) == _span(first)
        graphql.send({"type": "connection_init"})
        graphql.wait_type("connection_ack")
        graphql.send({"id": "top", "type": "subscribe", "payload": {
            "query": "subscription($b: ID!) { boardTop(board_id: $b) { period starts_at ends_at label } }",
            "variables": {"b": board_id}}})
        shown = graphql.wait_for(lambda m: m.get("id") == "top" and m["type"] == "next")["payload"]["data"]
        assert shown["boardTop"] == {"period": first["period"], **_span(first)}

        http.post(f"{base}/reset", {}, token=owner.token, expect=200)
        closed = watcher.wait_type("period_closed")
        assert (closed["period"], _span(closed)) == (first["period"], _span(first))
        fresh = http.get(f"{base}/periods", expect=200).get_json()["periods"][0]
        assert fresh["period"] == f"{first['period']}~2" and ", from " in fresh["label"]
        moved = watcher.wait_for(lambda m: m["type"] == "leaderboard_update"
                                 and m["period"] == fresh["period"])
        assert _span(moved) == _span(fresh)
    finally:
        watcher.close()
        graphql.close()
