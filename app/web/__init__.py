"""The web process: `create_app` builds it (its one composition root, which tests use too), with its
runtime (runtime.py), blueprints (api/, graphql/, rooms/, the pages), and the operator CLI; gunicorn
runs `start_background_work` in each worker (the timers)."""
from __future__ import annotations

import threading
from typing import Any

from flask import Flask
from flask.sessions import SessionInterface

from app.core.config import Config, load_config


class NoCookieSession(SessionInterface):
    """Every client of the service carries a token (or an API key), never a cookie: no request opens
    Flask's signed cookie session, which would build its serializer for every request. `flask.session` is
    the null session, which refuses writes."""

    def open_session(self, app, request):
        return None  # Flask then uses make_null_session

    def save_session(self, app, session, response) -> None:
        return None


def create_app(config: Config | dict[str, Any] | None = None) -> Flask:
    """Build the web app; `config` is a Config, or overrides applied to the environment's."""
    if not isinstance(config, Config):
        config = load_config(**(config or {}))
    app = Flask(__name__, static_folder="static", template_folder="templates")
    app.config["LIVEQUIZ"] = config
    app.session_interface = NoCookieSession()
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.json.sort_keys = False
    # Client messages are tiny (a bigger one gets an `error`, rooms/socket.py); frames above
    # 64 KiB close the socket. Pings find sockets whose peer vanished without closing: GraphQL's only; the
    # room and board sockets have the heartbeat (rooms/heartbeat.py) instead (extensions.py `_server`).
    app.config["SOCK_SERVER_OPTIONS"] = {"max_message_size": 64 * 1024, "ping_interval": 25,
                                         "subprotocols": ["graphql-transport-ws"]}  # app/web/graphql/ws.py
    if config.web_trusted_proxies > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=config.web_trusted_proxies,
                                x_proto=config.web_trusted_proxies)

    from app.core import redis_keys
    from app.web.extensions import RUNTIME, close_db, sock
    from app.web.runtime import Runtime
    redis_keys.configure(config)  # now, not at the first Redis connection: keys may be named before it
    app.extensions[RUNTIME] = Runtime(config)
    app.teardown_appcontext(close_db)
    sock.init_app(app)

    from app.web import headers, ops_dashboard, pages, playground
    from app.web.api import (
        api_keys,
        auth,
        errors,
        health,
        images,
        jwks,
        leaderboards,
        openapi,
        quizzes,
        request_log,
        scores,
        session_boards,
        sessions,
    )
    from app.web.graphql import http as graphql_http
    from app.web.graphql import ws as graphql_ws
    from app.web.rooms import leaderboard_socket
    from app.web.rooms import socket as room_socket
    errors.register(app)
    request_log.register(app)
    headers.register(app)
    for blueprint in (health.bp, openapi.bp, auth.bp, jwks.bp, quizzes.bp, images.bp, sessions.bp,
                      session_boards.bp, leaderboards.bp, scores.bp, api_keys.bp, pages.bp, room_socket.bp,
                      leaderboard_socket.bp, graphql_http.bp, graphql_ws.bp, playground.bp, ops_dashboard.bp):
        app.register_blueprint(blueprint)

    from app.ops import ops
    app.cli.add_command(ops)
    return app


def start_background_work(app: Flask) -> threading.Event:
    """What a serving web process runs beside requests (gunicorn starts it in each worker): the timers."""
    from app.core.tracing import configure_tracing
    from app.web.extensions import RUNTIME
    from app.web.timers import start_timers

    configure_tracing(app.config["LIVEQUIZ"], "web")  # after the fork: the exporter's thread is the worker's
    runtime = app.extensions[RUNTIME]
    return start_timers(runtime.db_sessions, runtime.engine, runtime.redis, app.config["LIVEQUIZ"])
