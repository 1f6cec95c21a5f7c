"""What the blueprints and handlers of the web process reach: the socket extension (unbound, attached
in `create_app`), the process's runtime and the request's database session."""
from __future__ import annotations

from typing import TYPE_CHECKING

from flask import current_app, g
from flask_sock import Sock
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from app.runtime import Runtime

sock = Sock()
RUNTIME = "livequiz"


def runtime() -> "Runtime":
    """The current app's runtime (app/runtime.py), built by `create_app`."""
    return current_app.extensions[RUNTIME]


def get_db() -> Session:
    """The request's database session, opened lazily and closed at teardown."""
    if "db" not in g:
        g.db = runtime().db_sessions()
    return g.db


def close_db(_exc: BaseException | None = None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()
