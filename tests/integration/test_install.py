"""The install: tests run from the project's own virtualenv, and the web server boots from it.

A package installed by hand into the system Python once hid a missing dependency (gevent): these
tests fail when the run is not inside `.venv`, or when the venv cannot start the configured server.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import requests

from app.core.secret_key import DEVELOPMENT_SECRET_KEY
from tests.helpers import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_the_tests_run_from_the_projects_virtualenv():
    assert sys.prefix != sys.base_prefix, "pytest must run from a virtualenv, not the system Python"
    assert Path(sys.prefix).resolve() == (ROOT / ".venv").resolve()
    stamp = ROOT / ".venv" / ".lock-stamp"
    assert stamp.is_file(), ".venv was not built by scripts/venv.sh from requirements.lock"


def _web_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "ALLOW_INSECURE_SECRET_KEY")}
    # Ports of its own: a running `make up` holds the defaults.
    env.update({"WEB_WORKERS": "1", "PYTHONUNBUFFERED": "1", "WEB_METRICS_PORT": str(free_port())}, **extra)
    return env


def test_gunicorn_serves_with_the_configured_worker_class_from_the_venv(tmp_path):
    port = free_port()
    log = tmp_path / "web.log"
    env = _web_env(WEB_PORT=str(port), SECRET_KEY="k" * 48)
    with open(log, "wb") as out:
        # --log-level info makes gunicorn name the worker class it booted (the config file says warning).
        web = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--log-level",
                                "info",
                                "app:create_app()"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        def healthy() -> bool:
            assert web.poll() is None, log.read_text()
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(healthy, "the web server did not answer /healthz")
        text = log.read_text()
        assert "Using worker: gevent" in text, text
        assert "Booting worker" in text, text
    finally:
        web.terminate()
        web.wait(30)


def test_the_web_process_refuses_the_public_development_key():
    done = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:create_app()"],
                          cwd=ROOT, env=_web_env(WEB_PORT=str(free_port()),
                                                 SECRET_KEY=DEVELOPMENT_SECRET_KEY),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "SECRET_KEY" in lines[0], done.stderr
