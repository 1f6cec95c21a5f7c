"""The live-quiz web application: `create_app` builds the web process (its one composition root)."""
from __future__ import annotations

import threading
from typing import Any

from flask import Flask

from app.core.config import Config, load_config


def create_app(config: Config | dict[str, Any] | None = None) -> Flask:
    """Build the web app; `config` is a Config, or overrides applied to the environment's."""
    if not isinstance(config, Config):
        config = load_config(**(config or {}))
    app = Flask(__name__, static_folder="web/static", template_folder="web/templates")
    app.config["LIVEQUIZ"] = config
    app.config["SECRET_KEY"] = config.secret_key
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.json.sort_keys = False
    # Client messages are tiny (a bigger one gets an `error`, app/rooms/socket.py); frames above
    # 64 KiB close the socket. Pings find sockets whose peer vanished without closing.
    app.config["SOCK_SERVER_OPTIONS"] = {"max_message_size": 64 * 1024, "ping_interval": 25,
                                         "subprotocols": ["graphql-transport-ws"]}  # app/graphql/ws.py
    if config.web_trusted_proxies > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=config.web_trusted_proxies, x_proto=config.web_trusted_proxies)

    from app.core import redis_keys
    from app.extensions import RUNTIME, close_db, sock
    from app.runtime import Runtime
    redis_keys.configure(config)  # now, not at the first Redis connection: keys may be named before it
    app.extensions[RUNTIME] = Runtime(config)
    app.teardown_appcontext(close_db)
    sock.init_app(app)

    from app.api import (
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
    from app.graphql import http as graphql_http
    from app.graphql import ws as graphql_ws
    from app.rooms import board_socket
    from app.rooms import socket as room_socket
    from app.web import headers, pages, playground
    errors.register(app)
    request_log.register(app)
    headers.register(app)
    for blueprint in (health.bp, openapi.bp, auth.bp, jwks.bp, quizzes.bp, images.bp, sessions.bp, session_boards.bp,
                      leaderboards.bp, scores.bp, api_keys.bp, pages.bp, room_socket.bp, board_socket.bp,
                      graphql_http.bp, graphql_ws.bp, playground.bp):
        app.register_blueprint(blueprint)

    from app.ops import ops
    app.cli.add_command(ops)
    return app


def start_background_work(app: Flask) -> threading.Event:
    """What a serving web process runs beside requests (gunicorn starts it in each worker): the timers."""
    from app.extensions import RUNTIME
    from app.timers import start_timers

    runtime = app.extensions[RUNTIME]
    return start_timers(runtime.db_sessions, runtime.engine, app.config["LIVEQUIZ"])
