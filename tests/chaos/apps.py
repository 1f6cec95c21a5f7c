"""The run's web, relay and worker processes, under a supervisor that restarts them, and killed for real.

Starting is tests/bench's BenchStack with Policy APP (scripts/stack: the policy of `make up`), so the
run relies on the supervisor as production relies on its own: a fault SIGKILLs a process (never a
graceful stop) and waits until the supervisor has it running again. The supervisor counts every exit
of a running process; one the run did not cause is a finding (`unasked_exits`). A SIGKILLed gunicorn
master's workers die with it (gunicorn.conf.py); the final cleanup still reaches the master's process
group, in case one outlived it.
"""
from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import psutil
import requests

from app.core.config import Config
from scripts.stack.supervisor import APP
from tests.bench.stack import BenchStack
from tests.helpers import wait_until


class ChaosApps:
    """web, relay and worker of the run: start, SIGKILL, and stop everything at the end."""

    def __init__(self, config: Config, logs: Path):
        logs.mkdir(parents=True, exist_ok=True)
        self.stack = BenchStack(config, logs, policy=APP)
        self.killed: Counter[str] = Counter()  # exits the run caused, by process
        self.groups: set[int] = set()  # process groups of killed gunicorn masters, whose workers may linger

    @property
    def base_url(self) -> str:
        return self.stack.base_url

    @property
    def supervisor(self):
        return self.stack.apps.supervisor

    def names(self, kind: str | None = None) -> list[str]:
        """The processes a fault may kill (of `kind`): one of each here, two on the cluster."""
        return [name for name in ("web", "relay", "worker") if kind in (None, name)]

    def pid(self, name: str) -> int:
        return self.supervisor.pid(name)

    def start(self, name: str) -> None:
        self.stack.start(name)

    def web_url(self, name: str) -> str:
        """The address of web `name` itself."""
        return self.base_url

    def healthy(self, url: str | None = None) -> bool:
        try:
            return requests.get((url or self.base_url) + "/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def kill(self, name: str) -> None:
        """SIGKILL the process itself (for web: the gunicorn master), then wait until the supervisor has
        started it again (a web: answering /healthz)."""
        pid = self.supervisor.kill(name)
        self.killed[name] += 1
        if name.startswith("web"):
            self.groups.add(pid)
        self.wait_back(name, pid)

    def wait_back(self, name: str, old_pid: int) -> None:
        def back() -> bool:
            info = self.supervisor.info(name)
            running = info["statename"] == "RUNNING" and info["pid"] not in (0, old_pid)
            return running and (not name.startswith("web") or self.healthy(self.web_url(name)))

        wait_until(back, f"the supervisor did not bring {name} back after a SIGKILL", every_s=0.1)

    def unasked_exits(self) -> Counter[str]:
        """Exits of a running process that no fault caused (the supervisor restarted each one)."""
        exits = Counter(self.supervisor.exits())
        return Counter({name: exits[name] - self.killed[name] for name in self.names()
                        if exits[name] > self.killed[name]})

    def web_workers(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid("web")).children()
        except psutil.Error:
            return []

    def kill_web_worker(self, choose) -> int:
        """SIGKILL one gunicorn worker (`choose` picks it) and wait until the master replaced it."""
        workers = wait_until(self.web_workers, "gunicorn has no worker to kill")
        victim = choose(workers)
        victim.send_signal(signal.SIGKILL)
        wanted = self.stack.config.web_workers

        def replaced() -> bool:
            alive = [p for p in self.web_workers() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
            return len(alive) >= wanted and victim.pid not in {p.pid for p in alive} and self.healthy()

        wait_until(replaced, "the gunicorn master did not replace a killed worker", every_s=0.1)
        return victim.pid

    def stop_all(self) -> None:
        """The supervisor stops what it runs; then SIGTERM, and after a grace period SIGKILL, what is left
        of the killed masters' process groups."""
        self.stack.stop_all()
        for process in _members(self.groups):
            _signal(process, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _members(self.groups):
            time.sleep(0.2)
        for process in _members(self.groups):
            _signal(process, signal.SIGKILL)


def _members(groups: set[int]) -> list[psutil.Process]:
    """Live gunicorn processes of `groups` (a recycled group id is never ours)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        try:
            if process.info["status"] == psutil.STATUS_ZOMBIE or os.getpgid(process.pid) not in groups:
                continue
        except (ProcessLookupError, psutil.Error):
            continue
        if "gunicorn" in " ".join(process.info["cmdline"] or []):
            found.append(process)
    return found


def _signal(process: psutil.Process, signum: int) -> None:
    try:
        process.send_signal(signum)
    except psutil.Error:
        pass
