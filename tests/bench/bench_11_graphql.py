"""11. GraphQL beside REST: a top-10 read over POST /graphql against GET .../top under the same load (two
wrk at once, -t1 -c8 each, same board); `boardTop` subscriptions (graphql-transport-ws) against the
live-board sockets, both watching one board at once while writes change its top 10: each kind's delay
from a change applied in Redis to each socket's first message showing it; and fragment bombs (1.6 KB
documents whose 40 fragments each spread the next twice, 2^40 fields once expanded), two in flight
at all times: how long each takes to be refused, and /healthz p99 meanwhile, each beside the same
with two ordinary top-10 queries in flight."""
from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.bench import report
from tests.bench.bench_08_logins import _probe
from tests.bench.bench_10_live_boards import _boards, _Changes, _owner, _Writer
from tests.bench.rooms_client import BoardSocket, GraphQLSocket, close_all, connect_all
from tests.bench.support import env_int, percentiles, wrk
from tests.helpers import fragment_bomb

READ_CONNECTIONS = 16
ENTRIES = 5000
BOMBS_IN_FLIGHT = 2
BOMB_FRAGMENTS = 40


def _fill(base_url: str, token: str, board_id: str, entries: int) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    for start in range(0, entries, 1000):
        scores = [{"leaderboard_id": board_id, "player_id": f"p{n}", "score": n,
                   "display_name": f"Player {n}"}
                  for n in range(start, min(entries, start + 1000))]
        assert requests.post(f"{base_url}/api/v1/scores/batch", json={"scores": scores}, headers=headers,
                             timeout=120).status_code == 200


def bench_graphql_top_beside_rest(stack, tmp_path):
    seconds = env_int("BENCH_GRAPHQL_S", 20)
    token = _owner(stack.base_url)
    [board_id] = _boards(stack.base_url, token, 1, "best")
    _fill(stack.base_url, token, board_id, ENTRIES)
    query = json.dumps({"query": f'{{ top(board_id: "{board_id}", limit: 10) {{ version total entries '
                                 f'{{ rank player_id display_name score reached_at }} }} }}'},
                       separators=(",", ":"))
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
            await connect_all(stack.ws_url, bench_config.redis_url,
                              [(s, uuid.uuid4()) for s in boards + subscribers])
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
    report.row(f"graphql: subscription change -> socket p99 ({watchers} + {watchers} sockets)",
               graphql_delay["p99"], "ms", baseline=board_delay["p99"],
               baseline_name="live-board sockets p99, same changes", target="<= live boards + 20 ms",
               met=None if board_delay["p99"] is None or graphql_delay["p99"] is None
               else graphql_delay["p99"] <= board_delay["p99"] + 20)
    assert changes.changes and all(s.connected for s in boards + subscribers)


def _two_in_flight(stack, query_of, seconds: int) -> tuple[dict, dict, set[str]]:
    """BOMBS_IN_FLIGHT clients posting `query_of(n)` back to back for `seconds` (plus a second to start):
    their latencies (ms), /healthz's meanwhile, and the answers (status and error code)."""
    stopping = threading.Event()
    latencies: list[float] = []
    answers: set[str] = set()
    texts = itertools.count()

    def send() -> None:
        session = requests.Session()
        while not stopping.is_set():
            query = query_of(next(texts))
            began = time.perf_counter()
            response = session.post(f"{stack.base_url}/graphql", json={"query": query}, timeout=120)
            latencies.append((time.perf_counter() - began) * 1000)
            errors = response.json().get("errors")
            answers.add(f"{response.status_code} {errors[0]['extensions']['code'] if errors else 'ok'}")

    senders = [threading.Thread(target=send, daemon=True) for _ in range(BOMBS_IN_FLIGHT)]
    for sender in senders:
        sender.start()
    time.sleep(1)
    healthz = percentiles(_probe(f"{stack.base_url}/healthz", seconds))
    stopping.set()
    for sender in senders:
        sender.join(120)
    return percentiles(latencies), healthz, answers


def bench_fragment_bombs_beside_healthz(stack):
    """Each text is new (its operation is named after its number): parsed and validated anew, as an
    attacker's would be. The baseline: the same with two ordinary top-10 queries in flight."""
    seconds = env_int("BENCH_GRAPHQL_BOMB_S", 10)
    _probe(f"{stack.base_url}/healthz", 2)  # warm the connection
    bomb = fragment_bomb(BOMB_FRAGMENTS)
    read, healthz_reads, read_answers = _two_in_flight(
        stack, lambda n: (f'query Q{n} {{ top(board_id: "default", limit: 10) '
                          f'{{ total entries {{ rank score }} }} }}'), seconds)
    refused, healthz_bombs, bomb_answers = _two_in_flight(
        stack, lambda n: bomb.replace("query Q", f"query Q{n}", 1), seconds)
    report.record("graphql_fragment_bombs", {
        "fragments": BOMB_FRAGMENTS, "bytes": len(bomb), "in_flight": BOMBS_IN_FLIGHT, "seconds": seconds,
        "refused_ms": refused, "answers": sorted(bomb_answers), "healthz_during_bombs_ms": healthz_bombs,
        "top10_ms": read, "top10_answers": sorted(read_answers), "healthz_during_top10_ms": healthz_reads})
    assert bomb_answers == {"400 query_too_costly"} and read_answers == {"200 ok"}, \
        (bomb_answers, read_answers)
    report.row(f"graphql: fragment bomb (n = {BOMB_FRAGMENTS}) refused, p99 ({BOMBS_IN_FLIGHT} in flight)",
               refused["p99"], "ms", baseline=read["p99"], baseline_name="a new top-10 query answered, p99",
               target="<= 2 x a top-10 query", met=refused["p99"] <= 2 * read["p99"])
    report.row(f"/healthz p99 while {BOMBS_IN_FLIGHT} fragment bombs are in flight",
               healthz_bombs["p99"], "ms", baseline=healthz_reads["p99"],
               baseline_name=f"while {BOMBS_IN_FLIGHT} top-10 queries are",
               target="<= 2 x beside top-10 queries", met=healthz_bombs["p99"] <= 2 * healthz_reads["p99"])
