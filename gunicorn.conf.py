"""Gunicorn settings for the web process; values come from the app's config (environment).

gevent workers: a WebSocket holds its connection for the whole quiz, so a thread per socket
(gthread) caps a room at the thread count, while a greenlet per socket holds thousands per worker.
psycopg 3 and redis-py cooperate with gevent once the standard library is patched, which the
gevent worker does before the app is imported.

A worker dies with its master. Orphaned, it would hold the public port until its last socket closes
(a player's WebSocket: minutes), and the master its supervisor starts again fails its five attempts
to bind and exits. Linux ends it at once (the parent-death signal, SIGKILL), as a container or
systemd ends a crashed service's other processes; its clients reconnect, and a request it did not
answer is retried with its idempotency key, as after any crash.

Metrics: every worker writes its own to files in PROMETHEUS_MULTIPROC_DIR (made here when not set),
and the master serves their sum on METRICS_HOST:WEB_METRICS_PORT (loopback by default), so the
endpoint is one whatever the number of workers and lives through any worker's restart; the public
port has no /metrics.
"""
import ctypes
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from app.accounts.tokens import check_token_keys
from app.core.config import load_config_or_exit
from app.core.secret_key import check_secret_key

# The web process signs tokens: it refuses to start with a public or short SECRET_KEY, or an unfit
# JWT_PRIVATE_KEY_FILE.
_config = load_config_or_exit(check_secret_key, check_token_keys)

# Set before any worker imports prometheus_client, which reads it once.
_MADE_METRICS_DIR = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _MADE_METRICS_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="livequiz-prometheus-")
_metrics_server = None  # the master's, once started

bind = f"{_config.web_host}:{_config.web_port}"
workers = _config.web_workers
worker_class = "gevent"
worker_connections = 12_000
# WebSocket connections are long-lived; the timeout applies to a worker that stops answering.
timeout = 60
graceful_timeout = 10
keepalive = 30
# Gunicorn's access log would print query strings, which carry WebSocket tokens; the app logs requests itself.
accesslog = None
errorlog = "-"
loglevel = "warning"


def on_starting(server) -> None:
    # A new master counts from zero: an earlier run's files would add to its counters.
    for stale in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
        stale.unlink()


def when_ready(server) -> None:
    """The master's metrics port (a thread of its own), before it forks the first worker. The master
    imports nothing of the app: what it imports, every worker inherits before gevent patches the
    standard library (psycopg imported here would wait on PostgreSQL without yielding, in every worker)."""
    if not _config.web_metrics_port:
        return
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    global _metrics_server
    registry = CollectorRegistry(auto_describe=False)
    multiprocess.MultiProcessCollector(registry)  # reads the workers' files at each scrape
    try:
        _metrics_server, _ = start_http_server(_config.web_metrics_port, addr=_config.metrics_host,
                                               registry=registry)
    except OSError as exc:
        server.halt(f"WEB_METRICS_PORT={_config.web_metrics_port} cannot be served on "
                    f"{_config.metrics_host}: {exc}", 2)


def child_exit(server, worker) -> None:
    # A dead worker's counters stay in the sum; its live gauges (open sockets) leave it.
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    if _MADE_METRICS_DIR:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def _die_with_master(worker) -> None:
    """The kernel SIGKILLs this worker when its master (the thread that forked it) ends; a master gone
    already, between the fork and here, ends it now. Linux only: elsewhere gunicorn's own check of its
    parent (each second, then an exit that waits for open sockets) is all there is."""
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    if ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != worker.ppid:
        os.kill(os.getpid(), signal.SIGKILL)


def post_fork(server, worker) -> None:
    _die_with_master(worker)
    # The metrics port is the master's: a worker outliving it must not keep the port bound.
    if _metrics_server is not None:
        _metrics_server.socket.close()
    # gunicorn answers what it refuses itself (e.g. an over-long request line) in the API's JSON shape.
    from gunicorn import util

    from app.web.api.errors import write_server_error
    util.write_error = write_server_error


def post_worker_init(worker) -> None:
    from app.core.logs import configure_logging
    from app.web import start_background_work

    configure_logging(_config, "web")
    start_background_work(worker.app.wsgi())
    from app.web.collector import freeze_survivors
    freeze_survivors()  # a full collection walks only what survived since the last (collector.py)
