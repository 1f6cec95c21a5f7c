"""15. Tracing's cost: acknowledged answers/s with tracing on against off, as bench 1 measures them.

"On" is every process of the stack (web, relay, worker) with OTEL_EXPORTER_OTLP_ENDPOINT naming a loopback
port where no collector listens, sampling as configured (by default parentbased_traceidratio at 1 %:
every span started, the sampled ones recorded, queued and their export failing; OTEL_TRACES_SAMPLER=
parentbased_always_on in the bench's environment records them all); "off" is the stack as it runs by
default (no endpoint: no SDK, the no-op API). BENCH_TRACING_RUNS (3) runs of BENCH_TRACING_S (20) seconds
each, alternating off, on, off, on...: the machine is shared and noisy, and alternating spreads its drift
over both. Each run answers fresh rooms (bench 1's rooms, requests and question controller). The figure is
the ratio of the medians; the target, within 5 %.
"""
from __future__ import annotations

import math
import statistics
import time

import requests

from tests.bench import report
from tests.bench.bench_01_ingest import CONNECTIONS, Controller, write_answer_requests
from tests.bench.support import env_int, make_rooms, open_next, wrk
from tests.helpers import free_port

ROOMS, PLAYERS = 20, 50
TRACED = ("web", "relay", "worker")


def _restart(stack, endpoint: str | None) -> None:
    for name in TRACED:
        stack.stop(name)
    for name in TRACED:
        if endpoint is None:
            stack.start(name)
        else:
            stack.start(name, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint)


def _answers_per_s(stack, engine, config, tmp_path, duration: int, prefix: int) -> dict:
    questions = min(100, max(4, math.ceil(duration * 4000 / (ROOMS * PLAYERS))))
    rooms = make_rooms(engine, config, ROOMS, PLAYERS, questions, prefix=prefix)
    http = requests.Session()
    for room in rooms:
        assert open_next(http, stack.base_url, room) == 200
    requests_file = write_answer_requests(tmp_path / f"answers-{prefix}.tsv", rooms, questions)
    time.sleep(2)  # the worker's first rebuilds of the fresh rooms
    controller = Controller(engine, stack.base_url, rooms)
    controller.start()
    try:
        cpu_s = sum(stack.process_cpu(name) for name in TRACED)
        answers = wrk(stack.base_url, requests_file, duration, CONNECTIONS)
        cpu_s = sum(stack.process_cpu(name) for name in TRACED) - cpu_s
        return {**answers, "cpu_ms_per_answer": 1000 * cpu_s / max(answers["acknowledged"], 1)}
    finally:
        controller.stopping.set()
        controller.join(5)


def bench_tracing(stack, bench_engine, bench_config, tmp_path):
    runs, duration = env_int("BENCH_TRACING_RUNS", 3), env_int("BENCH_TRACING_S", 20)
    nowhere = f"http://127.0.0.1:{free_port()}"  # no collector listens there
    assert 1 <= runs <= 3, "each run answers rooms of a join-code prefix of its own (2..7)"
    rates: dict[str, list[float]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    measured: list[dict] = []
    for run in range(runs):
        for index, mode in enumerate(("off", "on")):
            _restart(stack, nowhere if mode == "on" else None)
            prefix = 2 + 2 * run + index
            answers = _answers_per_s(stack, bench_engine, bench_config, tmp_path, duration, prefix)
            assert answers["acknowledged"] > 0, answers
            rates[mode].append(answers["per_s"])
            cpu[mode].append(answers["cpu_ms_per_answer"])
            measured.append({"mode": mode, **{k: answers[k] for k in (
                "per_s", "cpu_ms_per_answer", "acknowledged", "non_2xx", "socket_errors", "statuses",
                "latency_ms", "first_error")}})
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    cpu_off, cpu_on = statistics.median(cpu["off"]), statistics.median(cpu["on"])
    report.record("tracing", {"rooms": ROOMS, "players_per_room": PLAYERS, "connections": CONNECTIONS,
                              "duration_s": duration, "runs": runs, "answers_per_s": rates, "wrk": measured,
                              "median_off": off, "median_on": on, "cpu_ms_per_answer": cpu,
                              "cpu_median_off": cpu_off, "cpu_median_on": cpu_on, "endpoint": nowhere})
    report.row("tracing on (no collector): answers/s, median", on, "/s", baseline=off,
               baseline_name="tracing off, median", target=">= 0.95 x off", met=on >= 0.95 * off)
    # CPU time per answer (web, relay and worker over wrk's window) is what a loaded machine's drift
    # disturbs least: the ratio of its medians is the cost a busy host would see.
    report.row("tracing on (no collector): CPU ms per answer, median", cpu_on, " ms", baseline=cpu_off,
               baseline_name="tracing off, median", target="<= 1.05 x off", met=cpu_on <= 1.05 * cpu_off)
