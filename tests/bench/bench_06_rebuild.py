"""6. Rebuild of the board of a session with 1,000,000 answers (10,000 players x 100 questions) from
PostgreSQL, `app.quiz.board.rebuild.rebuild_session_board`, in this process. The session and its 1,000,000
(published) outbox events were written by the relay benchmark when it ran at that size (BENCH_RELAY_EVENTS);
else this benchmark writes its own (BENCH_BIG_PLAYERS players). The rebuild reads both."""
from __future__ import annotations

import os
import signal
import time

from app.quiz.board.rebuild import rebuild_session_board
from tests.bench import report
from tests.bench.bench_04_relay import SESSION
from tests.bench.big_session import create
from tests.bench.support import CpuMeter, env_int, profiling, start_profile


def bench_rebuild(stack, bench_engine, bench_redis):
    players = env_int("BENCH_BIG_PLAYERS", 10_000)
    if SESSION.get("answers") != players * 100:  # the relay benchmark's session is of another size (or none)
        session_id, _ = create(bench_engine, players=players)
        SESSION["id"], SESSION["answers"] = session_id, players * 100
    profiler = start_profile(os.getpid(), "rebuild", 40, idle=True) if profiling() else None
    if profiler is not None:
        time.sleep(1)
    with CpuMeter() as cpu:
        started = time.monotonic()
        rebuilt = rebuild_session_board(bench_engine, bench_redis, SESSION["id"])
        seconds = time.monotonic() - started
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)  # py-spy writes what it has on Ctrl-C
        profiler.wait(30)
    report.record("rebuild", {"answers": SESSION["answers"], "players": rebuilt.players,
                              "applied_members": rebuilt.marked, "seconds": round(seconds, 2),
                              "cpu": cpu.report("self")})
    report.row(f"rebuild of {SESSION['answers']:,} answers", round(seconds, 2), "s", target="<= 10 s",
               met=seconds <= 10)
