"""The leaderboard service through the running processes: a game server's scores go through the outbox,
the relay, Kafka and the worker to Redis; periods close by themselves; a flushed Redis is rebuilt."""
from __future__ import annotations

import uuid

from sqlalchemy import text

from app.leaderboards.board.keys import LeaderboardKeys
from tests.helpers import Api, HttpClient, wait_until


def _top(http: Api, board_id: str, **query):
    return http.get(f"/api/v1/leaderboards/{board_id}/top", expect=200, **query).get_json()


def test_a_game_servers_scores_reach_the_board(live_stack):
    http = Api(HttpClient(live_stack.base_url))
    host = http.host()
    board_id = "e2e-" + uuid.uuid4().hex[:10]
    http.post("/api/v1/leaderboards", {"id": board_id, "name": "Arena", "sort_order": "desc",
                                       "update_mode": "best", "reset_period": "never"},
              token=host.token, expect=201)
    key = http.post("/api/v1/api-keys", {"name": "server"}, token=host.token, expect=201).get_json()["key"]
    for player, value in (("ann", 30), ("ben", 50), ("cat", 40), ("ann", 20)):
        http.post("/api/v1/scores", {"leaderboard_id": board_id, "player_id": player, "score": value},
                  token=key, expect=201)
    board = wait_until(lambda: (b := _top(http, board_id))["total"] == 3 and b,
                       "the scores never reached the board")
    assert [(e["player_id"], e["score"], e["rank"]) for e in board["entries"]] == [
        ("ben", 50, 1), ("cat", 40, 2), ("ann", 30, 3)]
    unchanged = http.post("/api/v1/scores", {"leaderboard_id": board_id, "player_id": "ann", "score": 10},
                          token=key, expect=201).get_json()
    assert (unchanged["outcome"], unchanged["score"], unchanged["rank"]) == ("unchanged", 30, 3)


def test_a_period_closes_at_its_boundary_and_stays_readable(live_stack, engine, redis_client):
    http = Api(HttpClient(live_stack.base_url))
    host = http.host()
    board_id = "e2e-" + uuid.uuid4().hex[:10]
    http.post("/api/v1/leaderboards", {"id": board_id, "name": "Daily", "sort_order": "asc",
                                       "update_mode": "replace", "reset_period": "daily",
                                       "timezone": "Europe/Paris"}, token=host.token, expect=201)
    http.post("/api/v1/scores", {"leaderboard_id": board_id, "player_id": "speedy", "score": 61},
              token=host.token, expect=201)
    first = http.get(f"/api/v1/leaderboards/{board_id}", expect=200).get_json()["current_period"]
    wait_until(lambda: _top(http, board_id)["total"] == 1, "the score never reached the board")
    # as if the day ended now: the timer must close it, with nobody writing
    with engine.begin() as connection:
        connection.execute(text("UPDATE leaderboard_periods SET ends_at = clock_timestamp() "
                                "WHERE leaderboard_id = :b AND closed_at IS NULL"), {"b": board_id})
    wait_until(lambda: http.get(f"/api/v1/leaderboards/{board_id}",
                                expect=200).get_json()["current_period"] != first,
               "the ended period was never closed")
    periods = http.get(f"/api/v1/leaderboards/{board_id}/periods", expect=200).get_json()["periods"]
    closed = next(p for p in periods if p["period"] == first)
    assert closed["closed_at"] and closed["total"] == closed["entry_count"] == 1  # entry_count: deprecated
    past = _top(http, board_id, period=first)
    assert [(e["player_id"], e["score"]) for e in past["entries"]] == [("speedy", 61)]
    wait_until(lambda: redis_client.ttl(LeaderboardKeys(board_id).period(first).z) > 0,
               "the closed period's keys were never given an expiry")
    with engine.connect() as connection:
        closes = connection.execute(text("SELECT payload FROM events WHERE aggregate_id = :b "
                                         "AND event_type = 'period_closed'"), {"b": board_id}).scalars().all()
    assert len(closes) == 1 and closes[0]["top"][0]["player_id"] == "speedy"


def test_a_flushed_redis_is_rebuilt_from_postgresql_on_read(live_stack, redis_client):
    http = Api(HttpClient(live_stack.base_url))
    host = http.host()
    board_id = "e2e-" + uuid.uuid4().hex[:10]
    http.post("/api/v1/leaderboards", {"id": board_id, "name": "Sum", "sort_order": "desc",
                                       "update_mode": "increment", "reset_period": "never"}, token=host.token,
              expect=201)
    for _ in range(3):
        http.post("/api/v1/scores", {"leaderboard_id": board_id, "player_id": "p", "score": 7},
                  token=host.token, expect=201)
    wait_until(lambda: [e["score"] for e in _top(http, board_id)["entries"]] == [21],
               "the increments never reached the board")
    keys = LeaderboardKeys(board_id)
    redis_client.delete(keys.cfg, keys.periods, *keys.period("all").all)
    assert [e["score"] for e in _top(http, board_id)["entries"]] == [21]
