"""The whole system as processes: gunicorn (two workers), the outbox relay and the cache worker.

They run against this test run's database, Redis database and topics, on free loopback ports.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from playwright.sync_api import Browser, sync_playwright

from tests.helpers import free_port, stack_env, wait_until

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@dataclass
class LiveStack:
    base_url: str
    ws_url: str
    config: object
    processes: dict
    logs: Path

    def log_of(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")


def _wait_http(url: str, process: subprocess.Popen) -> None:
    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{url} server exited with {process.returncode}")
        try:
            return requests.get(url, timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_until(answers, f"{url} did not answer", every_s=0.1)


@pytest.fixture(scope="session")
def live_stack(database, kafka_topics, redis_client):
    config = kafka_topics
    port = free_port()
    logs = Path(tempfile.mkdtemp(prefix="livequiz-e2e-"))
    metrics_dir = logs / "prometheus"
    metrics_dir.mkdir()
    env = stack_env(config, WEB_PORT=str(port), WEB_WORKERS="2", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    commands = {
        "web": [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:create_app()"],
        "relay": [sys.executable, "-m", "outbox_relay"],
        "worker": [sys.executable, "-m", "cache_worker"],
        "ingest": [sys.executable, "-m", "score_ingest"],
    }
    processes = {}
    for name, command in commands.items():
        with open(logs / f"{name}.log", "wb") as log_file:
            processes[name] = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file,
                                               stderr=subprocess.STDOUT, start_new_session=True)
    stack = LiveStack(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", config, processes, logs)
    try:
        _wait_http(f"{stack.base_url}/healthz", processes["web"])
        yield stack
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for name, process in processes.items():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


@pytest.fixture(scope="session")
def browser() -> Browser:
    """Debian's Chromium driven by Playwright; no browser is ever downloaded."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
