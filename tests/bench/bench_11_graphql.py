"""11. GraphQL beside REST: a top-10 read over POST /graphql against GET .../top under the same load (two
wrk at once, -t1 -c8 each, same board); and `boardTop` subscriptions (graphql-transport-ws)
against the live-board sockets, both watching one board at once while writes change its top 10: each
kind's delay from a change applied in Redis to each socket's first message showing it."""
from __future__ import annotations

import asyncio
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.bench import report
from tests.bench.bench_10_live_boards import _boards, _Changes, _owner, _Writer
from tests.bench.rooms_client import BoardSocket, GraphQLSocket, close_all, connect_all
from tests.bench.support import env_int, percentiles, wrk

READ_CONNECTIONS = 16
ENTRIES = 5000


def _fill(base_url: str, token: str, board_id: str, entries: int) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    for start in range(0, entries, 1000):
        scores = [{"leaderboard_id": board_id, "player_id": f"p{n}", "score": n, "display_name": f"Player {n}"}
                  for n in range(start, min(entries, start + 1000))]
        assert requests.post(f"{base_url}/api/v1/scores/batch", json={"scores": scores}, headers=headers,
                             timeout=120).status_code == 200


def bench_graphql_top_beside_rest(stack, tmp_path):
    seconds = env_int("BENCH_GRAPHQL_S", 20)
    token = _owner(stack.base_url)
    [board_id] = _boards(stack.base_url, token, 1, "best")
    _fill(stack.base_url, token, board_id, ENTRIES)
    query = json.dumps({"query": '{ top(board_id: "%s", limit: 10) { version total entries { rank player_id '
                                 'display_name score reached_at } } }' % board_id}, separators=(",", ":"))
    rest_file, graphql_file = tmp_path / "rest.tsv", tmp_path / "graphql.tsv"
    rest_file.write_text(f"/api/v1/leaderboards/{board_id}/top?limit=10\n")
    graphql_file.write_text(f"/graphql\t-\t{query}\n")
    # Both at once, half the connections each: every request of either kind meets the same load.
    with ThreadPoolExecutor(2) as pool:
        rest_run = pool.submit(wrk, stack.base_url, rest_file, seconds, READ_CONNECTIONS // 2)
        graphql_run = pool.submit(wrk, stack.base_url, graphql_file, seconds, READ_CONNECTIONS // 2)
        rest, graphql = rest_run.result(), graphql_run.result()
    for run in (rest, graphql):
        assert run["acknowledged"] > 0 and run["non_2xx"] == 0, run
    rest_p99, graphql_p99 = rest["latency_ms"]["p99"], graphql["latency_ms"]["p99"]
    report.record("graphql_top", {"entries": ENTRIES, "connections": READ_CONNECTIONS, "seconds": seconds,
                                  "rest": rest, "graphql": graphql})
    report.row(f"graphql: top-10 p99 ({graphql['per_s']:,.0f}/s)", graphql_p99, "ms", baseline=rest_p99,
               baseline_name=f"REST top-10 p99 ({rest['per_s']:,.0f}/s)", target="<= 1.5 x REST",
               met=graphql_p99 <= 1.5 * rest_p99)


def bench_subscriptions_beside_live_boards(stack, bench_config):
    watchers = env_int("BENCH_GRAPHQL_SOCKETS", 300)
    seconds = env_int("BENCH_GRAPHQL_WATCH_S", 20)
    token = _owner(stack.base_url)
    [board_id] = _boards(stack.base_url, token, 1, "replace")

    async def watch() -> tuple[list, list, _Changes]:
        boards = [BoardSocket(board_id) for _ in range(watchers)]
        subscribers = [GraphQLSocket(board_id) for _ in range(watchers)]
        changes = _Changes(bench_config.redis_url, board_id)
        try:
            await connect_all(stack.ws_url, bench_config.redis_url, [(s, uuid.uuid4()) for s in boards + subscribers])
            changes.start()
            await _Writer(stack, token, board_id, 200).run(seconds)
            await asyncio.sleep(2 * bench_config.leaderboard_interval_ms / 1000 + 1)
        finally:
            changes.stopping.set()
            await close_all(boards + subscribers)
        return boards, subscribers, changes

    boards, subscribers, changes = asyncio.run(watch())
    changes.join(5)

    def delays(sockets) -> tuple[dict, int]:
        found, missed = [], 0
        for version, applied_at in changes.changes:
            for sock in sockets:
                arrival = sock.first_arrival(version)
                if arrival is None:
                    missed += 1
                else:
                    found.append(max(0.0, (arrival - applied_at) * 1000))
        return percentiles(found), missed

    (board_delay, board_missed), (graphql_delay, graphql_missed) = delays(boards), delays(subscribers)
    report.record("graphql_subscriptions", {"sockets_each": watchers, "seconds": seconds,
                                            "top_changes": len(changes.changes),
                                            "live_board_ms": board_delay, "live_board_missed": board_missed,
                                            "graphql_ms": graphql_delay, "graphql_missed": graphql_missed,
                                            "connected": [sum(s.connected for s in boards),
                                                          sum(s.connected for s in subscribers)]})
    report.row(f"graphql: subscription change -> socket p99 ({watchers} + {watchers} sockets)", graphql_delay["p99"],
               "ms", baseline=board_delay["p99"], baseline_name="live-board sockets p99, same changes",
               target="<= live boards + 20 ms",
               met=None if board_delay["p99"] is None or graphql_delay["p99"] is None
               else graphql_delay["p99"] <= board_delay["p99"] + 20)
    assert changes.changes and all(s.connected for s in boards + subscribers)
