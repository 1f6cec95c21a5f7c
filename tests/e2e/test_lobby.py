"""A lobby filling up, live: the host hears every name, players only the count, with the board."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.room_client import RoomClient
from tests.helpers import Api, HttpClient

JOINS = 60


@pytest.fixture
def http(live_stack) -> Api:
    return Api(HttpClient(live_stack.base_url))


def test_a_join_storm_gives_the_host_every_name_and_players_the_count_once_per_interval(live_stack,
                                                                                        http: Api):
    host = http.host()
    sid = http.live_session(host)["id"]
    first = http.join(sid, http.guest())
    hosting = RoomClient(live_stack.ws_url, sid, host.token)
    playing = RoomClient(live_stack.ws_url, sid, first.token)
    try:
        for socket in (hosting, playing):
            socket.wait_type("snapshot")
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=16) as pool:
            joined = list(pool.map(lambda _: http.join(sid, http.guest()), range(JOINS)))
        ids, heard = {p.participant_id for p in joined}, set()
        hosting.wait_for(lambda m: (m["type"] == "player_joined" and heard.add(m["participant_id"]))
                         or ids <= heard)
        last = playing.wait_for(lambda m: m["type"] == "leaderboard" and m["player_count"] == JOINS + 1)
        # The host got each name once; the player got no name, only boards, each a newer count.
        assert sorted(j["participant_id"] for j in hosting.of_type("player_joined")) == sorted(ids)
        seen = [m for m in playing.messages if m["_received"] <= last["_received"]]
        assert {m["type"] for m in seen} == {"snapshot", "leaderboard"}
        boards = [m for m in seen if m["type"] == "leaderboard"]
        # Coalesced: the room sends at most one board per interval, whatever the joins.
        interval_s = live_stack.config.leaderboard_interval_ms / 1000
        assert len(boards) <= (last["_received"] - started) / interval_s + 1, len(boards)
        counts = [m["player_count"] for m in boards]
        assert counts == sorted(counts)
    finally:
        hosting.close()
        playing.close()
