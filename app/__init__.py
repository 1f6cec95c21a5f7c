"""The live-quiz web application."""
from __future__ import annotations

from typing import Any

from flask import Flask

from app.config import Config, load_config


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
    app.config["SOCK_SERVER_OPTIONS"] = {"max_message_size": 64 * 1024, "ping_interval": 25}
    if config.web_trusted_proxies > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=config.web_trusted_proxies, x_proto=config.web_trusted_proxies)

    from app.extensions import init_services, sock
    init_services(app, config)
    sock.init_app(app)

    from app.api import errors, health, openapi, auth, quizzes, sessions, request_log
    from app.api import leaderboards
    errors.register(app)
    request_log.register(app)
    from app.web import headers
    headers.register(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(quizzes.bp)
    app.register_blueprint(sessions.bp)
    from app.web import pages
    app.register_blueprint(pages.bp)

    from app.rooms import socket as room_socket
    app.register_blueprint(room_socket.bp)
    app.register_blueprint(leaderboards.bp)

    from app.ops import ops
    app.cli.add_command(ops)
    return app
