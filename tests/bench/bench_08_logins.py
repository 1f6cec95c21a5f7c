"""8. Password hashing under a burst of logins: /healthz latency while 8 wrong-password logins run at
once, beside its latency with nothing else running, measured the same way in the same run.

scrypt costs about a tenth of a second of CPU per login; a web worker runs it off its event loop, two at
a time, at the lowest CPU priority, and at most PASSWORD_HASH_CPU_SHARE of a core on average
(app/accounts/hashing.py): the logins past that wait their turn, and the cores stay mostly the web's.
"""
from __future__ import annotations

import threading
import time
import uuid

import requests

from tests.bench import report
from tests.bench.support import env_int, percentiles

LOGINS = 8


def _probe(url: str, seconds: float, interval_s: float = 0.02) -> list[float]:
    """Sequential GETs, one every `interval_s`: each one's latency in ms."""
    session = requests.Session()
    latencies = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        began = time.perf_counter()
        assert session.get(url, timeout=30).status_code == 200
        latencies.append((time.perf_counter() - began) * 1000)
        time.sleep(max(0.0, interval_s - (time.perf_counter() - began)))
    return latencies


def bench_healthz_beside_a_burst_of_logins(stack):
    seconds = env_int("BENCH_LOGINS_S", 15)
    healthz = f"{stack.base_url}/healthz"
    _probe(healthz, 2)  # warm the connection
    idle = percentiles(_probe(healthz, seconds))
    stopping = threading.Event()
    statuses: list[int] = []

    def wrong_logins() -> None:
        session = requests.Session()
        while not stopping.is_set():
            statuses.append(session.post(f"{stack.base_url}/api/v1/auth/login", timeout=60, json={
                "username": f"nobody_{uuid.uuid4().hex[:10]}", "password": "wrong password"}).status_code)

    threads = [threading.Thread(target=wrong_logins, daemon=True) for _ in range(LOGINS)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1)
        busy = percentiles(_probe(healthz, seconds))
    finally:
        stopping.set()
        for thread in threads:
            if thread.is_alive():
                thread.join(60)
    report.record("logins", {"concurrent_logins": LOGINS, "seconds": seconds, "healthz_idle_ms": idle,
                             "healthz_during_logins_ms": busy, "logins_answered": len(statuses),
                             "login_statuses": sorted(set(statuses))})
    ratio = busy["p99"] / idle["p99"] if idle["p99"] else None
    report.row(f"/healthz p99 during {LOGINS} concurrent wrong logins", busy["p99"], "ms",
               baseline=idle["p99"], baseline_name="idle p99", target="<= 2 x idle p99",
               met=bool(ratio is not None and ratio <= 2))
