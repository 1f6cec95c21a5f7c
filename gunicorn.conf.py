"""Gunicorn settings for the web process; values come from the app's config (environment).

gevent workers: a WebSocket holds its connection for the whole quiz, so a thread per socket
(gthread) caps a room at the thread count, while a greenlet per socket holds thousands per worker.
psycopg 3 and redis-py cooperate with gevent once the standard library is patched, which the
gevent worker does before the app is imported.
"""
from app.config import check_secret_key, load_config_or_exit
from app.tokens import check_token_keys

# The web process signs tokens: it refuses to start with a public or short SECRET_KEY, or an unfit
# JWT_PRIVATE_KEY_FILE.
_config = load_config_or_exit(check_secret_key, check_token_keys)

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


def post_fork(server, worker) -> None:
    # gunicorn answers what it refuses itself (e.g. an over-long request line) in the API's JSON shape.
    from gunicorn import util

    from app.api.errors import write_server_error
    util.write_error = write_server_error


def post_worker_init(worker) -> None:
    from app import start_background_work
    from app.logs import configure_logging

    configure_logging(_config, "web")
    start_background_work(worker.app.wsgi())
