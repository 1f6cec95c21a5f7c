"""9. The leaderboard service: score writes beside the answer path, the rebuild of a 1,000,000-entry
board, and its reads beside /healthz under the same load.

- Score writes: wrk (-t1 -c64, as the ingest benchmark) cycles through `POST /scores` requests of a
  game server (an API key) to an `increment` board of 100,000 players, each with its own
  `submission_id`. The baseline is the answer path's acknowledged rate (benchmark 1) of the same run.
- The big board: 1,000,000 entries written with SQL into a `best` board's open period, then
  `app.leaderboards.board.rebuild.rebuild_period` (timed, in this process) puts it in Redis.
- Reads of the big board: wrk (-t1 -c16) per kind of read, one after the other: top-10, around-me
  (range 5) of random players, a random player's standing, stats; then /healthz the same way. A
  game server writes to the same board at about 50 scores/s throughout, so every read kind and the
  baseline are measured under the same load.
- One owner's floods beside another's scores: a game server of one owner sends single `POST
  /scores` one after the other (its latency p50/p99), first alone, then while 4 clients of another
  owner send `POST /scores/batch` of 1,000 scores naming one player each, back to back.
"""
from __future__ import annotations

import json
import random
import threading
import time
import uuid

import requests
from sqlalchemy import text

from app.leaderboards.board.rebuild import rebuild_period
from tests.bench import report
from tests.bench.support import CpuMeter, env_int, percentiles, wrk

WRITE_CONNECTIONS = 64
READ_CONNECTIONS = 16
SCORE_PLAYERS = 100_000


def _owner_key(base_url: str) -> tuple[str, str]:
    """A registered board owner's token and an API key of theirs."""
    http = requests.Session()
    username = "owner_" + uuid.uuid4().hex[:10]
    account = {"username": username, "password": "bench password"}
    assert http.post(f"{base_url}/api/v1/auth/register", json=account, timeout=60).status_code == 201
    token = http.post(f"{base_url}/api/v1/auth/login", json=account, timeout=60).json()["access_token"]
    created = http.post(f"{base_url}/api/v1/api-keys", json={"name": "bench game server"},
                        headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert created.status_code == 201, created.text
    return token, created.json()["key"]


def _board(base_url: str, token: str, **settings) -> dict:
    body = {"id": "bench" + uuid.uuid4().hex[:8], "name": "Bench", "sort_order": "desc",
            "reset_period": "never", **settings}
    created = requests.post(f"{base_url}/api/v1/leaderboards", json=body, timeout=30,
                            headers={"Authorization": f"Bearer {token}"})
    assert created.status_code == 201, created.text
    return created.json()


def bench_score_writes(stack, tmp_path):
    duration = env_int("BENCH_SCORES_S", 40)
    token, key = _owner_key(stack.base_url)
    board_id = _board(stack.base_url, token, update_mode="increment")["id"]
    requests_file = tmp_path / "scores.tsv"
    rng = random.Random(9)
    with open(requests_file, "w") as out:
        for n in range(duration * 2 * 5000):  # more than wrk sends: no request is a retry
            body = json.dumps({"leaderboard_id": board_id, "player_id": f"p{rng.randrange(SCORE_PLAYERS)}",
                               "score": rng.randrange(1, 100), "submission_id": f"s{n}"},
                              separators=(",", ":"))
            out.write(f"/api/v1/scores\t{key}\t{body}\n")
    # Each score waits (SCORE_RANK_WAIT_MS at most) until the board shows it, to answer its rank: a
    # game server's rate is bounded by the requests it has in flight, not by the server's capacity.
    # So: the answer path's 64 connections, and 256.
    runs = {}
    for connections in (WRITE_CONNECTIONS, 4 * WRITE_CONNECTIONS):
        web_cpu0 = stack.process_cpu("web")
        runs[connections] = wrk(stack.base_url, requests_file, duration, connections)
        runs[connections]["web_cpu_cores"] = round((stack.process_cpu("web") - web_cpu0)
                                                   / runs[connections]["seconds"], 2)
    answers = report.RESULTS["benchmarks"].get("ingest", {}).get("answers_per_s")
    report.record("score_writes", {"duration_s": duration, "players": SCORE_PLAYERS, "runs": runs,
                                   "answers_per_s_same_run": answers})
    for connections, writes in runs.items():
        report.row(f"leaderboards: POST /scores acknowledged/s, {connections} connections",
                   writes["per_s"], "/s", baseline=answers,
                   baseline_name="answers/s (bench 1, 64 connections)", target=">= answers/s",
                   met=None if answers is None else writes["per_s"] >= answers)
        report.row(f"leaderboards: POST /scores p50 / p99, {connections} connections",
                   f"{writes['latency_ms']['p50']:.0f} / {writes['latency_ms']['p99']:.0f}", "ms",
                   target="(info)")
        assert writes["acknowledged"] > 0 and writes["non_2xx"] == 0, writes


def _seed(engine, board_id: str, entries: int) -> str:
    """`entries` players in the board's open period, written with SQL (no events: Redis gets them from the
    rebuild). Scores are drawn from 0..999,999, so ties are common and tie positions matter."""
    with engine.begin() as db:
        period = db.execute(text("SELECT period FROM leaderboard_periods WHERE leaderboard_id = :b "
                                 "AND closed_at IS NULL"), {"b": board_id}).scalar_one()
        db.execute(text("""
            INSERT INTO leaderboard_entries (leaderboard_id, period, player_id, score, tie_seq, version,
                                             display_name, reached_at)
            SELECT :b, :p, 'p' || i, (random() * 999999)::bigint, nextval('leaderboard_tie_seq'), 1,
                   'Player ' || i, now() - make_interval(secs => (:n - i) / 1000.0)
            FROM generate_series(1, :n) AS i"""), {"b": board_id, "p": period, "n": entries})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
        db.execute(text("VACUUM ANALYZE leaderboard_entries"))
    return period


class _Writer(threading.Thread):
    """A game server writing to the board at about `rate` scores/s."""

    def __init__(self, base_url: str, key: str, board_id: str, players: int, rate: float):
        super().__init__(daemon=True)
        self.url, self.board_id, self.players, self.interval = (f"{base_url}/api/v1/scores", board_id,
                                                                players, 1 / rate)
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {key}"
        self.stopping = threading.Event()
        self.statuses: dict[int, int] = {}

    def run(self) -> None:
        rng = random.Random(99)
        while not self.stopping.wait(self.interval):
            status = self.http.post(self.url, timeout=30, json={
                "leaderboard_id": self.board_id, "player_id": f"p{rng.randrange(1, self.players + 1)}",
                "score": rng.randrange(1_000_000)}).status_code
            self.statuses[status] = self.statuses.get(status, 0) + 1


def _read(stack, tmp_path, name: str, paths: list[str], duration: int) -> dict:
    requests_file = tmp_path / f"{name}.tsv"
    requests_file.write_text("".join(f"{path}\n" for path in paths))
    result = wrk(stack.base_url, requests_file, duration, READ_CONNECTIONS)
    assert result["acknowledged"] > 0 and result["non_2xx"] == 0, result
    return result


def bench_big_board(stack, bench_engine, bench_redis, bench_config, tmp_path):
    entries = env_int("BENCH_BOARD_ENTRIES", 1_000_000)
    duration = env_int("BENCH_BOARD_READ_S", 20)
    token, key = _owner_key(stack.base_url)
    board_id = _board(stack.base_url, token, update_mode="best")["id"]
    period = _seed(bench_engine, board_id, entries)

    with CpuMeter() as cpu:
        started = time.monotonic()
        rebuilt = rebuild_period(bench_engine, bench_redis, board_id, period,
                                 period_ttl_s=bench_config.leaderboard_period_ttl_s)
        rebuild_s = time.monotonic() - started
    assert rebuilt.entries == entries

    rng = random.Random(7)
    base = f"/api/v1/leaderboards/{board_id}"
    kinds = {
        "top-10": [f"{base}/top?limit=10"],
        "around-me": [f"{base}/around/p{rng.randrange(1, entries + 1)}?range=5" for _ in range(20_000)],
        "player": [f"{base}/player/p{rng.randrange(1, entries + 1)}" for _ in range(20_000)],
        "stats": [f"{base}/stats"],
        "healthz": ["/healthz"],
    }
    writer = _Writer(stack.base_url, key, board_id, entries, rate=50)
    writer.start()
    try:
        reads = {name: _read(stack, tmp_path, name, paths, duration) for name, paths in kinds.items()}
    finally:
        writer.stopping.set()
        writer.join(30)
    healthz_p99 = reads["healthz"]["latency_ms"]["p99"]
    report.record("big_board", {"entries": entries, "rebuild_s": round(rebuild_s, 2),
                                "rebuild_cpu": cpu.report("self"),
                                "read_connections": READ_CONNECTIONS, "read_s": duration, "reads": reads,
                                "writer_statuses": writer.statuses})
    report.row(f"leaderboards: rebuild of a {entries:,}-entry board", round(rebuild_s, 2), "s",
               target="<= 10 s", met=rebuild_s <= 10)
    for name in ("top-10", "around-me", "player"):
        p99 = reads[name]["latency_ms"]["p99"]
        report.row(f"leaderboards: {name} p99 ({entries:,} entries, {reads[name]['per_s']:,.0f}/s)",
                   p99, "ms", baseline=healthz_p99, baseline_name="/healthz p99, same load",
                   target="<= 2 x /healthz p99", met=p99 <= 2 * healthz_p99)
    report.row(f"leaderboards: stats p99 ({entries:,} entries)", reads["stats"]["latency_ms"]["p99"], "ms",
               baseline=healthz_p99, baseline_name="/healthz p99, same load", target="(info)")
    assert writer.statuses and set(writer.statuses) <= {200, 201}, writer.statuses


FLOOD_CLIENTS = 4
FLOOD_BATCH = 1000


class _Flood(threading.Thread):
    """A client sending batches of FLOOD_BATCH scores, all naming one player, back to back."""

    def __init__(self, base_url: str, key: str, board_id: str, player_id: str):
        super().__init__(daemon=True)
        self.url = f"{base_url}/api/v1/scores/batch"
        self.body = json.dumps({"scores": [{"leaderboard_id": board_id, "player_id": player_id, "score": 1}]
                                * FLOOD_BATCH}).encode()  # encoded once: the load generator stays light
        self.http = requests.Session()
        self.http.headers.update({"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        self.stopping = threading.Event()
        self.statuses: dict[int, int] = {}

    def run(self) -> None:
        while not self.stopping.is_set():
            status = self.http.post(self.url, data=self.body, timeout=120).status_code
            self.statuses[status] = self.statuses.get(status, 0) + 1


def _single_scores(base_url: str, key: str, board_id: str,
                   duration_s: float) -> tuple[list[float], dict[int, int]]:
    """POST /scores one after the other for `duration_s`: each one's latency (ms), and the statuses."""
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {key}"
    latencies, statuses, n = [], {}, 0
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        n += 1
        started = time.perf_counter()
        status = http.post(f"{base_url}/api/v1/scores", timeout=120, json={
            "leaderboard_id": board_id, "player_id": f"p{n % 1000}", "score": n}).status_code
        latencies.append((time.perf_counter() - started) * 1000)
        statuses[status] = statuses.get(status, 0) + 1
    return latencies, statuses


def bench_scores_beside_another_owners_floods(stack):
    duration = env_int("BENCH_FLOOD_S", 20)
    token, key = _owner_key(stack.base_url)
    board_id = _board(stack.base_url, token, update_mode="best")["id"]
    flood_token, flood_key = _owner_key(stack.base_url)
    flood_board = _board(stack.base_url, flood_token, update_mode="increment")["id"]

    quiet, quiet_statuses = _single_scores(stack.base_url, key, board_id, duration)
    floods = [_Flood(stack.base_url, flood_key, flood_board, f"flood{n}") for n in range(FLOOD_CLIENTS)]
    for flood in floods:
        flood.start()
    try:
        deadline = time.monotonic() + 120
        while not all(flood.statuses for flood in floods) and time.monotonic() < deadline:
            time.sleep(0.1)  # every flood has had a batch answered: the load is on
        started = time.monotonic()
        batches0 = sum(sum(f.statuses.values()) for f in floods)
        loaded, loaded_statuses = _single_scores(stack.base_url, key, board_id, duration)
        batches = sum(sum(f.statuses.values()) for f in floods) - batches0
        flood_s = time.monotonic() - started
    finally:
        for flood in floods:
            flood.stopping.set()
        for flood in floods:
            flood.join(150)
    flood_statuses: dict[int, int] = {}
    for flood in floods:
        for status, count in flood.statuses.items():
            flood_statuses[status] = flood_statuses.get(status, 0) + count
    alone, beside = percentiles(quiet), percentiles(loaded)
    report.record("scores_beside_floods", {
        "duration_s": duration, "flood_clients": FLOOD_CLIENTS, "flood_batch": FLOOD_BATCH,
        "quiet_ms": alone, "beside_floods_ms": beside, "flood_batches_per_s": round(batches / flood_s, 1),
        "statuses": {"quiet": quiet_statuses, "beside": loaded_statuses, "floods": flood_statuses}})
    report.row("leaderboards: another owner's POST /scores p50 / p99, no floods",
               f"{alone['p50']:.0f} / {alone['p99']:.0f}", "ms", target="(info)")
    report.row(f"leaderboards: another owner's POST /scores p50 / p99 beside {FLOOD_CLIENTS} clients' "
               f"{FLOOD_BATCH:,}-score one-player batches ({batches / flood_s:.1f} batches/s)",
               f"{beside['p50']:.0f} / {beside['p99']:.0f}", "ms", target="(info)")
    report.row("leaderboards: another owner's POST /scores p99 beside the floods", beside["p99"], "ms",
               baseline=alone["p99"], baseline_name="p99 with no floods, same run", target="<= 4 x no floods",
               met=beside["p99"] <= 4 * alone["p99"])
    assert set(quiet_statuses) == set(loaded_statuses) == {201}, (quiet_statuses, loaded_statuses)
    assert set(flood_statuses) == {200} and batches > 0, flood_statuses
