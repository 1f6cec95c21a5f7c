"""The run's web, relay and worker processes, started as the stack starts them, and killed for real.

Starting is tests/bench's BenchStack (the commands of scripts/stack.sh start_app, an environment
from tests.helpers.stack_env, each process in a session of its own). This module adds what a
chaos run needs on top: SIGKILL of one process (never a graceful stop), the restart that follows,
and a record of every process group ever started, because a SIGKILLed gunicorn master leaves its
workers behind to exit on their own and the final cleanup must reach them too.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil
import requests

from app.config import Config
from tests.bench.stack import BenchStack
from tests.helpers import wait_until

_START_ATTEMPTS = 3


def _port_free(port: int) -> bool:
    """True when a server could bind the port now (gunicorn binds with SO_REUSEADDR too)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class ChaosApps:
    """web, relay and worker of the run: start, SIGKILL, and stop everything at the end."""

    def __init__(self, config: Config, logs: Path):
        logs.mkdir(parents=True, exist_ok=True)
        self.stack = BenchStack(config, logs)
        self.groups: set[int] = set()  # every process group started; a killed master's workers stay in it

    @property
    def base_url(self) -> str:
        return self.stack.base_url

    def names(self, kind: str | None = None) -> list[str]:
        """The processes a fault may kill (of `kind`): one of each here, two on the cluster."""
        return [name for name in ("web", "relay", "worker") if kind in (None, name)]

    def pid(self, name: str) -> int:
        return self.stack.processes[name].pid

    def start(self, name: str) -> None:
        for attempt in range(1, _START_ATTEMPTS + 1):
            if name == "web":
                self._prepare_web()
            try:
                process = self.stack.start(name)
            except RuntimeError:
                # gunicorn exited (its port was still held) or is slow to answer on a busy machine.
                process = self.stack.processes[name]
                self.groups.add(process.pid)
                if process.poll() is None:
                    wait_until(lambda: self.healthy(), "the restarted web did not answer /healthz")
                    return
                if attempt == _START_ATTEMPTS:
                    raise
                continue
            self.groups.add(process.pid)
            return

    def _prepare_web(self) -> None:
        # As stack.sh does at each start: the workers' Prometheus files go to an emptied directory.
        metrics_dir = self.stack.logs / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir()
        if self.stack.port:
            wait_until(lambda: _port_free(self.stack.port), f"port {self.stack.port} stayed taken", every_s=0.1)

    def exit_code(self, name: str) -> int | None:
        """The exit code of a process that is not running any more, None while it runs."""
        process = self.stack.processes.get(name)
        return None if process is None else process.poll()

    def healthy(self) -> bool:
        try:
            return requests.get(self.base_url + "/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def kill(self, name: str) -> None:
        """SIGKILL the process itself (for web: the gunicorn master), and reap it."""
        process = self.stack.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(30)

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
        """SIGTERM every process of the groups ever started, then SIGKILL what is left after a grace period."""
        for process in _members(self.groups):
            _signal(process, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _members(self.groups):
            for process in self.stack.processes.values():
                process.poll()  # reap our direct children, so they stop counting as members
            time.sleep(0.2)
        for process in _members(self.groups):
            _signal(process, signal.SIGKILL)
        for process in self.stack.processes.values():
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.stack.processes.clear()


_OURS = ("gunicorn", "outbox_relay", "cache_worker")


def _members(groups: set[int]) -> list[psutil.Process]:
    """Live processes of `groups` that run one of our programs (a recycled group id is never ours)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        try:
            if process.info["status"] == psutil.STATUS_ZOMBIE or os.getpgid(process.pid) not in groups:
                continue
        except (ProcessLookupError, psutil.Error):
            continue
        if any(mark in " ".join(process.info["cmdline"] or []) for mark in _OURS):
            found.append(process)
    return found


def _signal(process: psutil.Process, signum: int) -> None:
    try:
        process.send_signal(signum)
    except psutil.Error:
        pass
