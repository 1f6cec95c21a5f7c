"""10. Scores from Kafka, and a board watched live.

- Ingest rate: a backlog of seed 001's messages (BENCH_KAFKA_SCORES, 10 boards x distinct players) is
  produced with the score ingest stopped; then the ingest starts, and the rate is the backlog over the
  time until every score is visible on its board in Redis (through the ingest's transaction, the
  outbox, the relay, Kafka and the worker: the whole path, everything on the two cores). Beside it:
  the relay's and the worker's solo rates of benchmarks 4 and 5 in the same run.
- Produce -> visible: then scores at a steady 1,000/s for BENCH_KAFKA_LATENCY_S; one in ten is
  watched from its produce until its entry is in Redis.
- A watched board: 2,000 sockets on `/ws/leaderboards/{id}?top=10`, while writes arrive over HTTP at
  500/s (one in ten moves one of ten leading players, so it changes the top 10; the others write
  below it). The delay from a change applied in Redis (its stream entry) to each socket's first
  update showing it, against LEADERBOARD_INTERVAL_MS + 100 ms; and the writes acknowledged per
  second with the sockets open beside the same writer without them.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid

import redis as redis_lib
import requests
from confluent_kafka import Producer

from app.leaderboards.board.keys import LeaderboardKeys
from tests.bench import report
from tests.bench.rooms_client import BoardSocket, close_all, connect_all
from tests.bench.support import CpuMeter, HttpPool, env_int, percentiles

BOARDS = 10
STARS = 10


def _owner(base_url: str) -> str:
    http = requests.Session()
    account = {"username": "owner_" + uuid.uuid4().hex[:10], "password": "bench password"}
    assert http.post(f"{base_url}/api/v1/auth/register", json=account, timeout=60).status_code == 201
    return http.post(f"{base_url}/api/v1/auth/login", json=account, timeout=60).json()["access_token"]


def _boards(base_url: str, token: str, count: int, mode: str) -> list[str]:
    ids = []
    for _ in range(count):
        board_id = "kafka" + uuid.uuid4().hex[:8]
        created = requests.post(f"{base_url}/api/v1/leaderboards", timeout=30, headers={
            "Authorization": f"Bearer {token}"}, json={"id": board_id, "name": "Bench", "sort_order": "desc",
                                                      "update_mode": mode, "reset_period": "never"})
        assert created.status_code == 201, created.text
        ids.append(board_id)
    return ids


def _producer(config) -> Producer:
    return Producer({"bootstrap.servers": config.kafka_bootstrap_servers, "linger.ms": 20, "acks": "all",
                     "queue.buffering.max.messages": 1_000_000})


def _periods(redis, boards: list[str]) -> dict[str, str]:
    return {b: redis.hget(LeaderboardKeys(b).cfg, "period").decode() for b in boards}


def _visible(redis, boards: list[str], periods: dict[str, str]) -> int:
    pipe = redis.pipeline(transaction=False)
    for board_id in boards:
        pipe.zcard(LeaderboardKeys(board_id).period(periods[board_id]).z)
    return sum(pipe.execute())


def _produce_to_visible(config, redis, producer, boards: list[str], periods: dict[str, str]
                        ) -> tuple[list[float], dict, int, int]:
    """Scores at a steady rate for BENCH_KAFKA_LATENCY_S; one in ten watched from its produce until its
    entry is in Redis. Returns the delays (ms), the watched never seen, the seconds and the rate."""
    latency_s = env_int("BENCH_KAFKA_LATENCY_S", 15)
    steady = 1000
    watched: dict[tuple[str, str], float] = {}
    delays: list[float] = []
    done, abandoned = threading.Event(), threading.Event()

    def watch() -> None:
        while (not done.is_set() or watched) and not abandoned.is_set():
            pending = list(watched.items())
            if pending:
                pipe = redis.pipeline(transaction=False)
                for (board_id, player), _ in pending:
                    pipe.hexists(LeaderboardKeys(board_id).period(periods[board_id]).entries, player)
                now = time.monotonic()
                for ((board_id, player), sent_at), shown in zip(pending, pipe.execute()):
                    if shown:
                        delays.append((now - sent_at) * 1000)
                        del watched[(board_id, player)]
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        begin = time.monotonic()
        for n in range(steady * latency_s):
            due = begin + n / steady
            while time.monotonic() < due:
                producer.poll(max(0.0, due - time.monotonic()))
            board_id, player = boards[n % BOARDS], f"steady{n}"
            producer.produce(config.score_topic, key=board_id.encode(), value=json.dumps({
                "leaderboard_id": board_id, "player_id": player, "score": n}).encode())
            if n % 10 == 0:
                watched[(board_id, player)] = time.monotonic()
        producer.flush(60)
        done.set()
        watcher.join(120)
    finally:
        abandoned.set()  # what is not visible by now is reported as never visible
        watcher.join(5)
    return delays, watched, latency_s, steady


def bench_scores_from_kafka(stack, bench_config, bench_redis):
    backlog = env_int("BENCH_KAFKA_SCORES", 150_000)
    token = _owner(stack.base_url)
    boards = _boards(stack.base_url, token, BOARDS, "best")
    stack.stop("ingest")
    producer = _producer(bench_config)
    for n in range(backlog):
        board_id = boards[n % BOARDS]
        producer.produce(bench_config.score_topic, key=board_id.encode(), value=json.dumps({
            "leaderboard_id": board_id, "player_id": f"p{n}", "score": n % 100_000,
            "game_id": "bench"}).encode())
        if n % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(120) == 0
    for board_id in boards:  # each board is in Redis before the clock starts (its first read builds it)
        requests.get(f"{stack.base_url}/api/v1/leaderboards/{board_id}/top", timeout=30)
    periods = _periods(bench_redis, boards)

    ingest_cpu0 = 0.0
    try:
        with CpuMeter() as cpu:
            started = time.monotonic()
            stack.start("ingest")
            deadline = started + 600
            while (seen := _visible(bench_redis, boards, periods)) < backlog and time.monotonic() < deadline:
                time.sleep(0.2)
            seconds = time.monotonic() - started
        ingest_cpu = stack.process_cpu("ingest") - ingest_cpu0
        rate = seen / seconds
        delays, watched, latency_s, steady = _produce_to_visible(bench_config, bench_redis, producer, boards,
                                                                 periods)
    finally:
        stack.stop("ingest")  # not part of the standard stack
    latency = percentiles(delays)
    relay = next(iter(report.RESULTS["benchmarks"].get("relay", {}).get("modes", [])), {}).get("events_per_s")
    worker = report.RESULTS["benchmarks"].get("worker", {}).get("events_per_s")
    report.record("scores_from_kafka", {"backlog": backlog, "boards": BOARDS, "visible": seen,
                                        "seconds": round(seconds, 2), "per_s": round(rate, 1),
                                        "ingest_cpu_cores": round(ingest_cpu / seconds, 2),
                                        "machine_cpu": cpu.report("self"),
                                        "relay_solo_per_s": relay, "worker_solo_per_s": worker,
                                        "steady_rate": steady, "steady_s": latency_s,
                                        "produce_to_visible_ms": latency, "never_visible": len(watched)})
    report.row(f"kafka scores: committed and visible/s ({backlog:,} backlog)", round(rate, 1), "/s",
               target=">= 2,500/s", met=seen == backlog and rate >= 2500)
    report.row("kafka scores: relay / worker solo rates (benches 4, 5)",
               f"{relay or '-'} / {worker or '-'}", "/s", target="(info)")
    report.row(f"kafka scores: produce -> visible p50 / p99 @ {steady}/s",
               f"{latency['p50']} / {latency['p99']}", "ms", target="(info)")
    assert seen == backlog, f"{backlog - seen} scores never became visible"


class _Writer:
    """Score writes over HTTP at `rate`/s; one in ten moves a leading player (a change of the top 10)."""

    def __init__(self, stack, token: str, board_id: str, rate: int):
        self.stack, self.token, self.board_id, self.rate = stack, token, board_id, rate
        self.acknowledged = 0
        self.sent = 0

    async def run(self, seconds: float) -> float:
        pool = HttpPool("127.0.0.1", self.stack.port, 256)
        headers = {"Authorization": f"Bearer {self.token}"}
        begin = time.monotonic()
        tasks = []

        async def one(n: int) -> None:
            star = n % 10 == 0
            body = {"leaderboard_id": self.board_id, "score": 1_000_000 + n if star else n % 1000,
                    "player_id": f"star{(n // 10) % STARS}" if star else f"fan{n % 20_000}"}
            status, _ = await pool.request("POST", "/api/v1/scores", json.dumps(body).encode(), headers)
            self.acknowledged += status in (200, 201)

        n = 0
        while time.monotonic() - begin < seconds:
            due = begin + n / self.rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            tasks.append(asyncio.create_task(one(n)))
            n += 1
        await asyncio.gather(*tasks, return_exceptions=True)
        await pool.close()
        self.sent = n
        return self.acknowledged / (time.monotonic() - begin)


class _Changes(threading.Thread):
    """The board's stream: when each change of a leading player was applied (version, instant)."""

    def __init__(self, redis_url: str, board_id: str):
        super().__init__(daemon=True)
        self.client = redis_lib.Redis.from_url(redis_url)
        self.key = LeaderboardKeys(board_id).room
        self.last = "$"
        self.changes: list[tuple[int, float]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            for _, entries in self.client.xread({self.key: self.last}, count=1000, block=300) or []:
                for entry_id, fields in entries:
                    self.last = entry_id.decode()
                    if (fields.get(b"type") == b"board_changed"
                            and fields.get(b"player_id", b"").startswith(b"star")):
                        self.changes.append((int(fields[b"version"]), int(entry_id.split(b"-")[0]) / 1000.0))


def bench_a_board_watched_live(stack, bench_config):
    sockets_n = env_int("BENCH_BOARD_SOCKETS", 2000)
    seconds = env_int("BENCH_BOARD_WATCH_S", 30)
    rate = 500
    token = _owner(stack.base_url)
    [board_id] = _boards(stack.base_url, token, 1, "replace")
    interval_ms = bench_config.leaderboard_interval_ms

    alone = _Writer(stack, token, board_id, rate)
    rate_alone = asyncio.run(alone.run(seconds))

    async def watched() -> tuple[float, list[BoardSocket], _Changes, float]:
        sockets = [BoardSocket(board_id) for _ in range(sockets_n)]
        changes = _Changes(bench_config.redis_url, board_id)
        try:
            connect_s = await connect_all(stack.ws_url, bench_config.redis_url,
                                          [(s, uuid.uuid4()) for s in sockets])
            changes.start()
            writer = _Writer(stack, token, board_id, rate)
            with CpuMeter():
                achieved = await writer.run(seconds)
            await asyncio.sleep(2 * interval_ms / 1000 + 1)  # the last change's pushes
        finally:
            changes.stopping.set()
            await close_all(sockets)
        return achieved, sockets, changes, connect_s

    rate_watched, sockets, changes, connect_s = asyncio.run(watched())
    changes.join(5)
    connected = [s for s in sockets if s.connected]
    delays, missed = [], 0
    for version, applied_at in changes.changes:
        for sock in connected:
            arrival = sock.first_arrival(version)
            if arrival is None:
                missed += 1
            else:
                delays.append(max(0.0, (arrival - applied_at) * 1000))
    delay = percentiles(delays)
    ratio = rate_watched / rate_alone if rate_alone else None
    report.record("board_watched", {"sockets": sockets_n, "connected": len(connected),
                                    "connect_s": round(connect_s, 1),
                                    "writes_per_s_target": rate, "writes_per_s_alone": round(rate_alone, 1),
                                    "writes_per_s_watched": round(rate_watched, 1),
                                    "top_changes": len(changes.changes), "change_to_socket_ms": delay,
                                    "missed": missed, "interval_ms": interval_ms,
                                    "updates_received": sum(len(s.versions) for s in connected)})
    report.row(f"live board, {len(connected):,} sockets: top-10 change -> socket p99", delay["p99"], "ms",
               baseline=interval_ms + 100, baseline_name="LEADERBOARD_INTERVAL_MS + 100",
               target="<= interval + 100 ms",
               met=delay["p99"] is not None and delay["p99"] <= interval_ms + 100)
    report.row(f"live board: writes/s with {len(connected):,} watchers", round(rate_watched, 1), "/s",
               baseline=round(rate_alone, 1), baseline_name="same writer, no sockets", target=">= 0.9 x",
               met=ratio is not None and ratio >= 0.9)
    assert len(connected) == sockets_n and changes.changes
