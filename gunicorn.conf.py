"""Gunicorn settings for the web process; values come from the app's config (environment)."""
from app.config import load_config

_config = load_config()

bind = f"{_config.web_host}:{_config.web_port}"
workers = _config.web_workers
worker_class = "gthread"
threads = _config.web_threads
# WebSocket connections are long-lived; the timeout applies to a worker that stops answering.
timeout = 60
graceful_timeout = 10
keepalive = 30
# Gunicorn's access log would print query strings, which carry WebSocket tokens; the app logs requests itself.
accesslog = None
errorlog = "-"
loglevel = "warning"


def post_worker_init(worker) -> None:
    from app.logs import configure_logging

    configure_logging(_config, "web")
