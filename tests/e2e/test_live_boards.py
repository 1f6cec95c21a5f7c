"""Live boards over WebSocket through the running processes: a socket gets its top N first, then only
the changes of that top N (and of its player's standing); seed 001's subscribe protocol; a period that
closes sends its final standings and moves the socket on."""
from __future__ import annotations

import uuid

from sqlalchemy import text

from tests.e2e.room_client import SocketClient
from tests.helpers import Api, HttpClient, wait_until


def _board(http: Api, owner, **settings) -> str:
    board_id = "live-" + uuid.uuid4().hex[:10]
    http.post("/api/v1/leaderboards", {"id": board_id, "name": "Live", "sort_order": "desc",
                                       "update_mode": "best", "reset_period": "never", **settings},
              token=owner.token, expect=201)
    return board_id


def _scores(http: Api, owner, board_id: str, scores: dict[str, int]) -> None:
    http.post("/api/v1/scores/batch", {"scores": [{"leaderboard_id": board_id, "player_id": p, "score": s}
                                                  for p, s in scores.items()]}, token=owner.token, expect=200)


def _shown(http: Api, board_id: str, total: int) -> None:
    wait_until(lambda: http.get(f"/api/v1/leaderboards/{board_id}/top",
                                expect=200).get_json()["total"] == total,
               "the scores never reached the board")


def _players(update: dict) -> list[tuple[str, int]]:
    return [(e["player_id"], e["score"]) for e in update["entries"]]


def test_a_socket_gets_its_top_first_then_only_its_changes(live_stack):
    http = Api(HttpClient(live_stack.base_url))
    owner = http.host()
    board_id = _board(http, owner)
    _scores(http, owner, board_id, {f"p{i}": 100 * i for i in range(1, 6)})
    _shown(http, board_id, 5)
    watcher = SocketClient(f"{live_stack.ws_url}/ws/leaderboards/{board_id}?top=3&player=p1")
    try:
        first = watcher.wait_type("leaderboard_update")
        assert _players(first) == [("p5", 500), ("p4", 400), ("p3", 300)] and first["total"] == 5
        assert first["total_players"] == 5  # the deprecated alias of total, for one release
        assert (watcher.wait_type("standing")["rank"], first["leaderboard_id"]) == (5, board_id)

        # Below the top 3: the player's standing moves, the top does not, so no update is pushed.
        _scores(http, owner, board_id, {"p1": 150})
        standing = watcher.wait_for(lambda m: m["type"] == "standing" and m["score"] == 150)
        assert standing["rank"] == 5
        assert len(watcher.of_type("leaderboard_update")) == 1

        # Into the top 3: one update with the new order, and the player's new standing.
        _scores(http, owner, board_id, {"p1": 600})
        update = watcher.wait_for(lambda m: m["type"] == "leaderboard_update"
                                  and m["entries"][0]["player_id"] == "p1")
        assert _players(update) == [("p1", 600), ("p5", 500), ("p4", 400)]
        assert update["version"] > first["version"]
        assert watcher.wait_for(lambda m: m["type"] == "standing" and m["score"] == 600)["rank"] == 1
        versions = [m["version"] for m in watcher.of_type("leaderboard_update")]
        assert versions == sorted(set(versions))
    finally:
        watcher.close()


def test_seed_001_subscribe_protocol_on_one_socket(live_stack):
    http = Api(HttpClient(live_stack.base_url))
    owner = http.host()
    first, second = _board(http, owner), _board(http, owner)
    _scores(http, owner, first, {"ann": 10})
    _scores(http, owner, second, {"bob": 20})
    _shown(http, first, 1)
    _shown(http, second, 1)
    client = SocketClient(f"{live_stack.ws_url}/ws")
    try:
        for board_id in (first, second):
            client.send({"type": "subscribe", "leaderboard_id": board_id})
            assert client.wait_for(lambda m, b=board_id: m["type"] == "subscribed"
                                   and m["leaderboard_id"] == b)
            update = client.wait_for(lambda m, b=board_id: m["type"] == "leaderboard_update"
                                     and m["leaderboard_id"] == b)
            assert update["total"] == update["total_players"] == 1
        client.send({"type": "subscribe", "leaderboard_id": "no-such-board"})
        assert client.wait_type("error")["code"] == "not_found"
        client.send({"type": "subscribe", "leaderboard_id": first, "top": 0})
        assert client.wait_for(lambda m: m["type"] == "error" and m["code"] == "invalid_subscription")

        client.send({"type": "unsubscribe", "leaderboard_id": first})
        client.wait_type("unsubscribed")
        _scores(http, owner, first, {"ann": 11})
        _scores(http, owner, second, {"bob": 21})
        client.wait_for(lambda m: m["type"] == "leaderboard_update" and m["leaderboard_id"] == second
                        and m["entries"][0]["score"] == 21)
        after = client.messages[[m["type"] for m in client.messages].index("unsubscribed"):]
        assert not [m for m in after
                    if m.get("leaderboard_id") == first and m["type"] == "leaderboard_update"]
    finally:
        client.close()


def test_a_closing_period_sends_its_final_standings_and_moves_the_socket_on(live_stack, engine):
    http = Api(HttpClient(live_stack.base_url))
    owner = http.host()
    board_id = _board(http, owner, reset_period="daily")
    _scores(http, owner, board_id, {"ann": 30, "bob": 20})
    _shown(http, board_id, 2)
    watcher = SocketClient(f"{live_stack.ws_url}/ws/leaderboards/{board_id}")
    try:
        period = watcher.wait_type("leaderboard_update")["period"]
        with engine.begin() as connection:  # as if the day ended now: the timer closes it
            connection.execute(text("UPDATE leaderboard_periods SET ends_at = clock_timestamp() "
                                    "WHERE leaderboard_id = :b AND closed_at IS NULL"), {"b": board_id})
        closed = watcher.wait_type("period_closed")
        assert (closed["period"], closed["total"]) == (period, 2)
        assert closed["entry_count"] == 2  # the deprecated alias of total, for one release
        assert [(e["player_id"], e["score"]) for e in closed["entries"]] == [("ann", 30), ("bob", 20)]
        moved = watcher.wait_for(lambda m: m["type"] == "leaderboard_update" and m["period"] != period)
        assert moved["entries"] == [] and moved["total"] == 0
        _scores(http, owner, board_id, {"cy": 5})
        fresh = watcher.wait_for(lambda m: m["type"] == "leaderboard_update"
                                 and m["period"] == moved["period"] and m["entries"])
        assert _players(fresh) == [("cy", 5)]
    finally:
        watcher.close()


def test_refusals_close_with_a_reason(live_stack):
    missing = SocketClient(f"{live_stack.ws_url}/ws/leaderboards/no-such-board")
    assert missing.wait_closed() == 4404
    bad = SocketClient(f"{live_stack.ws_url}/ws/leaderboards/default?top=1000")
    assert bad.wait_closed() == 4400 and "top" in bad.close_reason


def test_a_sockets_entries_carry_their_metadata(live_stack):
    http = Api(HttpClient(live_stack.base_url))
    owner = http.host()
    board_id = _board(http, owner)
    http.post("/api/v1/scores", {"leaderboard_id": board_id, "player_id": "ann", "score": 5,
                                 "metadata": {"game_id": "match123", "level": 10}}, token=owner.token,
              expect=201)
    _scores(http, owner, board_id, {"ben": 3})
    _shown(http, board_id, 2)
    watcher = SocketClient(f"{live_stack.ws_url}/ws/leaderboards/{board_id}")
    try:
        first = watcher.wait_type("leaderboard_update")
        assert [(e["player_id"], e["metadata"]) for e in first["entries"]] == [
            ("ann", {"game_id": "match123", "level": 10}), ("ben", None)]
    finally:
        watcher.close()
