"""7. Growth: answer latency and relay claim time with 0 and with 10,000,000 rows in `events` and
`participant_answers`.

0 rows: both tables truncated (the bench database is ours). Measured: the latency of answers sent
open-loop at 200/s for 15 s across 30 fresh rooms (from the scheduled send to the 201), and the
relay's claim statement (`outbox_relay.relay._CLAIM`, LIMIT = the relay batch size) over the
~3,000 unpublished events those answers wrote (the relay is stopped), 30 times, each rolled back.
Then 10,000,000 rows are added to each table with one INSERT ... SELECT generate_series each:
answers of 100,000 players x 100 questions in 10 finished sessions, and published events (the
relay's claim only sees unpublished rows, through the partial index). To load them in minutes, the
tables' indexes and constraints are dropped first and re-created after (same names and definitions;
a freshly built index is denser than one grown by random inserts: slightly optimistic). VACUUM
ANALYZE and a CHECKPOINT (the load's 20,000,000 dirty rows are written out before, not during, the
measurement: a system grows to 10,000,000 rows over weeks, not in one transaction), then the same
measurements on fresh rooms. Each size is measured RUNS times (BENCH_GROWTH_RUNS, default 3) and
compared by the median of the runs' percentiles, so one stall does not decide a ratio.
The relay and the worker are stopped throughout; after it, both tables are emptied again and the relay
starts from a fresh slot (the old one holds the load's WAL), so the next benchmark finds no backlog.
"""
from __future__ import annotations

import asyncio
import json
import statistics
import time

import requests
from sqlalchemy import text

from outbox_relay.poll import _CLAIM
from tests.bench import report
from tests.bench.stack import drop_capture_slot
from tests.bench.support import CpuMeter, HttpPool, env_int, make_rooms, open_next, percentiles

RATE, SECONDS, ROOMS = 200, 18, 40
TARGETS = {"p50": 1.10, "p99": 1.50}  # answer latency at 10,000,000 rows vs empty tables
WARMUP_S = 3  # the first seconds of each measurement are not counted


async def _answers(stack, rooms, rate: int, seconds: int) -> tuple[list[float], dict]:
    pool = HttpPool("127.0.0.1", stack.port, 32)
    latencies: list[float] = []
    statuses: dict = {}
    work = [(room, player) for i in range(len(rooms[0].players)) for room in rooms
            for player in [room.players[i]]]
    work = work[: rate * seconds]

    async def one(room, player, due: float) -> None:
        body = json.dumps({"question_id": str(room.question_ids[0]), "choice": 1}).encode()
        status, _ = await pool.request("POST", f"/api/v1/sessions/{room.session_id}/answers", body,
                                       {"Authorization": f"Bearer {player.token}"})
        statuses[status] = statuses.get(status, 0) + 1
        if status == 201 and due >= started + WARMUP_S:
            latencies.append((time.monotonic() - due) * 1000)

    started = time.monotonic()
    tasks = []
    for n, (room, player) in enumerate(work):
        due = started + n / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(room, player, due)))
    await asyncio.wait(tasks, timeout=60)
    await pool.close()
    return latencies, {str(k): v for k, v in statuses.items()}


def _claim_ms(engine, batch: int, repeat: int = 30) -> dict:
    times = []
    with engine.connect() as db:
        for _ in range(repeat):
            with db.begin() as tx:
                started = time.perf_counter()
                rows = db.execute(_CLAIM, {"limit": batch}).all()
                times.append((time.perf_counter() - started) * 1000)
                tx.rollback()
    return {"claimed": len(rows), "median_ms": round(statistics.median(times), 2),
            "p95_ms": round(sorted(times)[int(0.95 * len(times)) - 1], 2)}


def _measure(stack, engine, config, prefix: int) -> dict:
    rooms = make_rooms(engine, config, ROOMS, 100, 1, prefix=prefix)
    http = requests.Session()
    for room in rooms:
        assert open_next(http, stack.base_url, room) == 200
    time.sleep(1)
    with CpuMeter() as cpu:
        latencies, statuses = asyncio.run(_answers(stack, rooms, RATE, SECONDS))
    with engine.connect() as db:
        sizes = dict(db.execute(text("SELECT relname, n_live_tup FROM pg_stat_user_tables "
                                     "WHERE relname IN ('events', 'participant_answers')")).all())
    return {"answer_latency_ms": percentiles(latencies), "statuses": statuses, "cpu": cpu.report("self"),
            "claim": _claim_ms(engine, config.relay_batch_size), "rows": sizes}


def _without_indexes(db, table: str, insert: str, params: dict) -> dict:
    """Drop the table's constraints and indexes, run `insert`, re-create them as they were."""
    timings = {}
    cons = db.execute(text("SELECT conname, pg_get_constraintdef(oid) AS definition, contype "
                           "FROM pg_constraint "
                           "WHERE conrelid = CAST(:t AS regclass) AND contype IN ('p', 'u', 'f')"),
                      {"t": table}).all()
    names = {c.conname for c in cons}
    indexes = [i for i in db.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :t"),
                                     {"t": table}).all() if i.indexname not in names]
    for c in sorted(cons, key=lambda c: c.contype != "f"):
        db.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{c.conname}"'))
    for i in indexes:
        db.execute(text(f'DROP INDEX "{i.indexname}"'))
    started = time.monotonic()
    db.execute(text(insert), params)
    timings["insert_s"] = round(time.monotonic() - started, 1)
    started = time.monotonic()
    for c in sorted(cons, key=lambda c: {"p": 0, "u": 1, "f": 2}[c.contype]):
        db.execute(text(f'ALTER TABLE {table} ADD CONSTRAINT "{c.conname}" {c.definition}'))
    for i in indexes:
        # A partitioned table's index reads `ON ONLY events`: made that way it would cover no partition.
        db.execute(text(i.indexdef.replace(" ON ONLY ", " ON ")))
    timings["indexes_s"] = round(time.monotonic() - started, 1)
    return timings


def _fill(engine, rows: int) -> dict:
    players = max(1, rows // 100)
    params = {"players": players, "rows": rows}
    timings = {}
    with engine.begin() as db:
        db.execute(text("SET LOCAL maintenance_work_mem = '512MB'"))
        db.execute(text("SET LOCAL synchronous_commit = off"))
        db.execute(text("INSERT INTO users (id, nickname, is_guest) "
                        "VALUES (md5('gr-host')::uuid, 'h', true)"))
        db.execute(text("INSERT INTO quizzes (id, owner_id, title) VALUES (md5('gr-quiz')::uuid, "
                        "md5('gr-host')::uuid, 'growth')"))
        db.execute(text("INSERT INTO questions (id, quiz_id, position, text, choices, correct_choice, "
                        "time_limit_s, points) SELECT md5('gr-q' || g)::uuid, md5('gr-quiz')::uuid, g, 'Q?', "
                        "'[\"a\",\"b\",\"c\",\"d\"]', 0, 20, 1000 FROM generate_series(0, 99) g"))
        db.execute(text("INSERT INTO quiz_sessions (id, quiz_id, host_id, join_code, status, ended_at) "
                        "SELECT md5('gr-s' || k)::uuid, md5('gr-quiz')::uuid, md5('gr-host')::uuid, "
                        "'8' || lpad(k::text, 5, '0'), 'ended', now() FROM generate_series(0, 9) k"))
        db.execute(text("INSERT INTO users (id, nickname, is_guest) SELECT md5('gr-u' || g)::uuid, 'p', true "
                        "FROM generate_series(0, :players - 1) g"), params)
        db.execute(text("INSERT INTO quiz_session_participants (id, quiz_session_id, user_id, nickname) "
                        "SELECT md5('gr-p' || g)::uuid, md5('gr-s' || (g % 10))::uuid, "
                        "md5('gr-u' || g)::uuid, 'p' || g FROM generate_series(0, :players - 1) g"), params)
        timings["participant_answers"] = _without_indexes(db, "participant_answers", """
            INSERT INTO participant_answers (id, quiz_session_participant_id, quiz_session_id, question_id,
                                             choice, correct, points, answered_ms, counted, created_at)
            SELECT gen_random_uuid(), md5('gr-p' || g)::uuid, md5('gr-s' || (g % 10))::uuid,
                   md5('gr-q' || q)::uuid, g % 4, g % 4 = 0, CASE WHEN g % 4 = 0 THEN 750 ELSE 0 END,
                   g % 20000, true,
                   now() - interval '2 days' + make_interval(secs => q * 30)
            FROM generate_series(0, 99) q, generate_series(0, :players - 1) g""", params)
        timings["events"] = _without_indexes(db, "events", """
            INSERT INTO events (id, aggregate_type, aggregate_id, event_type, version, payload, created_at,
                                published_at)
            SELECT gen_random_uuid(), 'quiz_session', md5('gr-s' || (n % 10))::uuid, 'answer_scored', 1,
                   jsonb_build_object('answer_id', md5('gr-a' || n)::uuid, 'points', n % 1000,
                                      'total', n % 100000),
                   now() - interval '2 days' + make_interval(secs => n / 1000.0),
                   now() - interval '2 days' + make_interval(secs => n / 1000.0 + 0.05)
            FROM generate_series(1, :rows) n""", params)
    started = time.monotonic()
    _vacuum(engine)
    timings["vacuum_analyze_s"] = round(time.monotonic() - started, 1)
    return timings


def _vacuum(engine) -> None:
    """VACUUM ANALYZE and CHECKPOINT now, so neither autovacuum nor the checkpointer does it during the
    measurement."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
        db.execute(text("VACUUM (ANALYZE) participant_answers"))
        db.execute(text("VACUUM (ANALYZE) events"))
        db.execute(text("CHECKPOINT"))


def _runs(stack, engine, config, prefix: int, runs: int) -> dict:
    """`runs` measurements; the median of each latency percentile and of the claim's median."""
    measured = [_measure(stack, engine, config, prefix) for _ in range(runs)]
    return {"runs": measured,
            "answer_latency_ms": {q: statistics.median(m["answer_latency_ms"][q] for m in measured)
                                  for q in ("p50", "p99")},
            "claim_median_ms": statistics.median(m["claim"]["median_ms"] for m in measured)}


def bench_growth(stack, bench_engine, bench_config):
    rows = env_int("BENCH_GROWTH_ROWS", 10_000_000)
    runs = env_int("BENCH_GROWTH_RUNS", 3)
    with stack.stopped("relay", "worker"):
        try:
            with bench_engine.begin() as db:
                db.execute(text("TRUNCATE participant_answers, events"))
            _vacuum(bench_engine)
            empty = _runs(stack, bench_engine, bench_config, 6, runs)
            started = time.monotonic()
            fill = _fill(bench_engine, rows)
            fill["total_s"] = round(time.monotonic() - started, 1)
            grown = _runs(stack, bench_engine, bench_config, 7, runs)
        finally:
            # 20,000,000 rows are of no further use; spare autovacuum the work. The slot's WAL holds them
            # (and the measured answers' events, of rooms nobody watches): the relay would decode it all
            # before anything newer, so it starts from a fresh slot instead, with an empty outbox.
            with bench_engine.begin() as db:
                db.execute(text("TRUNCATE participant_answers, events"))
            drop_capture_slot(bench_engine)
    report.record("growth", {"rows_added_per_table": rows, "rate_per_s": RATE, "seconds": SECONDS,
                             "runs": runs, "empty": empty, "grown": grown, "fill": fill})
    for q, limit in TARGETS.items():
        a, b = empty["answer_latency_ms"][q], grown["answer_latency_ms"][q]
        report.row(f"growth: answer latency {q} at {rows:,} rows (median of {runs})", b, "ms",
                   baseline=a, baseline_name="0 rows", target=f"<= {limit:.2f} x",
                   met=bool(a and b is not None and b <= limit * a))
    a, b = empty["claim_median_ms"], grown["claim_median_ms"]
    report.row(f"growth: polling relay claim median at {rows:,} rows", b, "ms", baseline=a,
               baseline_name="0 rows", target="(info)", met=None)
