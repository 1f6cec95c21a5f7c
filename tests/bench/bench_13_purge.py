"""13. The purge of remembered submission ids (`score_submissions`) beside 2,000 score writes/s.

The web's timers forget the submission ids past SCORE_SUBMISSION_RETENTION_HOURS once every
PURGE_EVERY_S. At 2,000 writes/s each round finds PURGE_EVERY_S x 2,000 rows past the retention (120,000
a minute); the rounds of one minute must clear them, or the table grows without end. A round stops
at its time budget (PURGE_BUDGET_S) and the timers go on at their next tick: the backlog is written with
SQL (aged past the retention), beside as many rows still within it, and rounds run one after the other,
timed, in this process, until one says it is done.
"""
from __future__ import annotations

import time

from sqlalchemy import text

from app.web.timers import PURGE_EVERY_S, forget_old_submissions
from tests.bench import report
from tests.bench.support import CpuMeter, env_int

WRITES_PER_S = 2000


def _count(engine, board: str) -> int:
    with engine.connect() as db:
        return db.execute(text("SELECT count(*) FROM score_submissions WHERE leaderboard_id = :b"),
                          {"b": board}).scalar()


def bench_submission_purge(stack, bench_engine, bench_config):
    backlog = env_int("BENCH_PURGE_ROWS", int(PURGE_EVERY_S * WRITES_PER_S))
    retention_s = bench_config.score_submission_retention_hours * 3600
    with bench_engine.begin() as db:
        for board, age_s in (("bench-purge-old", retention_s + 3600), ("bench-purge-kept", 0)):
            db.execute(text("""
                INSERT INTO score_submissions (leaderboard_id, submission_id, fingerprint, result, created_at)
                SELECT :b, 's' || n, md5(n::text), '{"outcome": "changed"}',
                       clock_timestamp() - make_interval(secs => :age) + make_interval(secs => n / 1000.0)
                FROM generate_series(1, :n) AS n"""), {"b": board, "age": age_s, "n": backlog})
    with bench_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
        db.execute(text("VACUUM ANALYZE score_submissions"))
    with CpuMeter() as cpu:
        started = time.monotonic()
        deleted, rounds, done = 0, 0, False
        while not done:
            purged = forget_old_submissions(bench_engine, bench_config.score_submission_retention_hours)
            deleted, rounds, done = deleted + purged.deleted, rounds + 1, purged.done
        seconds = time.monotonic() - started
    left, kept = _count(bench_engine, "bench-purge-old"), _count(bench_engine, "bench-purge-kept")
    with bench_engine.begin() as db:
        db.execute(text("DELETE FROM score_submissions WHERE leaderboard_id LIKE 'bench-purge-%'"))
    rate = deleted / max(seconds, 1e-9)
    report.record("submission_purge", {
        "backlog_rows": backlog, "writes_per_s_covered": WRITES_PER_S, "purge_every_s": PURGE_EVERY_S,
        "deleted": deleted, "rounds": rounds, "left": left, "kept_within_retention": kept,
        "seconds": round(seconds, 2), "rows_per_s": round(rate), "cpu": cpu.report("self")})
    report.row(f"purge of score_submissions: a minute's {backlog:,}-row backlog, {rounds} round(s) "
               f"({WRITES_PER_S:,} writes/s x {PURGE_EVERY_S:.0f} s)",
               deleted, "rows", baseline=backlog, baseline_name="backlog",
               target=f"all, in < {PURGE_EVERY_S:.0f} s", met=left == 0 and seconds < PURGE_EVERY_S)
    report.row("purge of score_submissions: rows deleted/s", round(rate), "/s",
               baseline=WRITES_PER_S, baseline_name="writes/s", target=f">= {WRITES_PER_S:,}/s",
               met=rate >= WRITES_PER_S)
    assert kept == backlog, "a submission id within its retention was forgotten"
