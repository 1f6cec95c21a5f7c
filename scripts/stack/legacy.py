"""Stacks started by the earlier scripts/stack.sh and scripts/cluster.sh, which wrote a NAME.pid file per
process instead of running a supervisor: `make down` stops them (once), `make up` names them."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from scripts.stack.supervisor import alive

# What a live process's command line holds, so a recycled pid is never taken for ours.
_MARKERS = {
    "postgres": "bin/postgres",
    "redis": "redis-server",
    "kafka": "server.properties",
    "web": "gunicorn",
    "relay": "outbox_relay",
    "worker": "cache_worker",
    "ingest": "score_ingest",
    "lb": "haproxy",
}
# Clients first (the relays flush to Kafka), then the servers.
_ORDER = ("lb", "web", "relay", "worker", "ingest", "kafka", "redis", "postgres")
STOP_S = 60


def running(run_dir: Path) -> dict[str, int]:
    """name -> pid of each process a pid file of `run_dir` names that still runs the program it started."""
    found = {}
    for pid_file in run_dir.glob("*.pid"):
        name = pid_file.stem
        marker = _MARKERS.get(name.split("-", 1)[0])
        try:
            pid = int(pid_file.read_text().split()[0])
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if marker and marker in command:
            found[name] = pid
    return found


def hint(run_dir: Path) -> str:
    return (
        "; a stack of the earlier scripts/stack.sh runs here: `make down` stops it"
        if running(run_dir)
        else ""
    )


def stop(run_dir: Path) -> bool:
    """SIGTERM each (SIGINT to PostgreSQL: its fast shutdown), a kind at a time (all Kafka nodes at once),
    and wait; True if there was any."""
    found = running(run_dir)
    for kind in _ORDER:
        batch = {name: pid for name, pid in found.items() if name.split("-", 1)[0] == kind}
        for name, pid in batch.items():
            print(f"stopping {name} (pid {pid}, started by the earlier scripts/stack.sh)")
            os.kill(pid, signal.SIGINT if kind == "postgres" else signal.SIGTERM)
        deadline = time.monotonic() + STOP_S
        while any(alive(pid) for pid in batch.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in batch.values():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    for pid_file in run_dir.glob("*.pid"):
        if pid_file.name != "supervisord.pid":
            pid_file.unlink()
    return bool(found)
