"""`BENCH_TIMELINE=1`: what each process of the run was doing when a change was late.

Every process of the run (the bench stack's and the bench's own) appends its long garbage collections, its
event loop's stalls and its rooms' deliveries to bench-results/timeline-<run>.jsonl (timeline_probe/
sitecustomize.py). Bench 3 then joins them against each change of its latency phase (`changes`): for each
change, when each web worker's first and last socket got it, what that worker delivered, and what held up
a worker or the client between the change and its last socket.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import psutil

from tests.bench.support import RESULTS_DIR

PROBE_DIR = Path(__file__).resolve().parent / "timeline_probe"
# A stall or collection this long before a change may still have held up its delivery.
BEFORE_S = 0.5


def enabled() -> bool:
    return bool(os.environ.get("BENCH_TIMELINE"))


def start(run: str) -> Path | None:
    """At the run's start, before any process is started: every process started from now on records."""
    if not enabled():
        return None
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"timeline-{run}.jsonl"
    os.environ["BENCH_TIMELINE_FILE"] = str(path)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROBE_DIR), os.environ.get("PYTHONPATH"))
                                               if p)
    from tests.bench.timeline_probe import sitecustomize

    sitecustomize.install(str(path))  # this process: the client's own collections
    return path


def records(since: float) -> list[dict[str, Any]]:
    path = os.environ.get("BENCH_TIMELINE_FILE")
    if not path or not Path(path).exists():
        return []
    out = []
    with open(path) as lines:
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:  # a line being written
                continue
            if record["at"] + record["ms"] / 1000 >= since:
                out.append(record)
    return out


async def watch_client_loop(stopping: asyncio.Event, step_s: float = 0.005, min_ms: float = 5.0) -> None:
    """The client's own event loop: a stall here stamps every frame read after it late."""
    from tests.bench.timeline_probe.sitecustomize import write

    while not stopping.is_set():
        began, cpu = time.perf_counter(), time.thread_time()
        await asyncio.sleep(step_s)
        late_ms = (time.perf_counter() - began - step_s) * 1000
        if late_ms >= min_ms:
            write({"kind": "stall", "pid": os.getpid(), "at": time.time() - late_ms / 1000 - step_s,
                   "ms": round(late_ms, 2), "cpu_ms": round((time.thread_time() - cpu) * 1000, 2)})


def worker_of_sockets(sockets: list, workers: list[psutil.Process], port: int) -> dict[int, int]:
    """{id(socket): pid of the web worker holding its server end}, by the client's local port."""
    by_port = {}
    for worker in workers:
        for c in worker.net_connections(kind="tcp"):
            if c.laddr and c.laddr.port == port and c.raddr:
                by_port[c.raddr.port] = worker.pid
    out = {}
    for sock in sockets:
        protocol = getattr(sock, "_protocol", None)
        if protocol is None or protocol.transport is None:
            continue
        name = protocol.transport.get_extra_info("sockname")
        if name and name[1] in by_port:
            out[id(sock)] = by_port[name[1]]
    return out


def per_change(observer, sockets_by_room: dict, since: float, worker_of: dict[int, int],
               client_pid: int) -> list[dict[str, Any]]:
    """Each change of the phase, the latest first: its last socket, each worker's first and last socket
    (ms after the change), and the timeline's records of the window [change - BEFORE_S, last socket] and
    the deliveries of the change (`at` in ms after the change)."""
    timeline = records(since - BEFORE_S)
    out = []
    for session_id, changes in observer.changes.items():
        for version, applied_at in changes:
            if applied_at < since:
                continue
            workers: dict[int, list[float]] = {}
            for sock in sockets_by_room[session_id]:
                arrival = sock.first_arrival(version)
                if arrival is not None:
                    workers.setdefault(worker_of.get(id(sock), 0), []).append((arrival - applied_at) * 1000)
            if not workers:
                continue
            last = max(max(times) for times in workers.values())
            end = applied_at + last / 1000
            seen = []
            for r in timeline:
                if r["kind"] == "deliver":
                    if r.get("session_id") != str(session_id) or str(r.get("version")) != str(version):
                        continue
                elif not (r["at"] <= end and r["at"] + r["ms"] / 1000 >= applied_at - BEFORE_S):
                    continue
                who = "client" if r["pid"] == client_pid else ("web" if r["pid"] in workers else "other")
                seen.append({**r, "who": who, "at": round((r["at"] - applied_at) * 1000, 1)})
            out.append({"version": version, "applied_at": applied_at, "last_ms": round(last, 1),
                        "workers": {str(pid): {"sockets": len(t), "first_ms": round(min(t), 1),
                                               "last_ms": round(max(t), 1)}
                                    for pid, t in sorted(workers.items())},
                        "timeline": sorted(seen, key=lambda r: r["at"])})
    return sorted(out, key=lambda c: -c["last_ms"])


def describe(change: dict[str, Any]) -> str:
    """One change in a few lines, for the bench's output."""
    lines = [f"change v{change['version']}: last socket {change['last_ms']} ms; " + "; ".join(
        f"worker {pid}: {w['sockets']} sockets {w['first_ms']}..{w['last_ms']} ms"
        for pid, w in change["workers"].items())]
    for r in change["timeline"]:
        extra = {k: v for k, v in r.items() if k not in ("kind", "pid", "at", "ms", "who")}
        lines.append(f"    {r['at']:>8} ms  {r['who']} {r['pid']} {r['kind']} {r['ms']} ms {extra}")
    return "\n".join(lines)
