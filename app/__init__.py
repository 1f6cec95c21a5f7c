"""The live quiz and its leaderboard service. `app:create_app()` is the web process (gunicorn, `flask --app
app`, the tests); its factory is app/web/__init__.py. The layout: app/core (what every process shares),
app/accounts, app/quiz and app/leaderboards (the two aggregates), app/web (the web process), app/ops (the
operator CLI); .importlinter states the layers."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

    from app.core.config import Config


def create_app(config: Config | dict[str, Any] | None = None) -> Flask:
    """The web app (app/web/__init__.py), imported on call: a process using only the core loads no web."""
    from app.web import create_app as create_web_app

    return create_web_app(config)
