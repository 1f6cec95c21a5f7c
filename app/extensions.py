"""What the blueprints and handlers of the web process reach: the socket extension (unbound, attached
in `create_app`), the process's runtime and the request's database session."""
from __future__ import annotations

from typing import TYPE_CHECKING

import simple_websocket.ws
from flask import current_app, g
from flask_sock import Sock
from sqlalchemy.orm import Session
from wsproto.extensions import PerMessageDeflate

if TYPE_CHECKING:
    from app.runtime import Runtime

sock = Sock()


class _DeclinedDeflate(PerMessageDeflate):
    """Declines a browser's offer of permessage-deflate. A room's message is serialised once and
    written to every socket of the room; compressed, each socket's copy would go through a zlib
    stream of its own (its own context), the one per-socket cost left in a fan-out to thousands.
    The messages are small JSON, so the bytes saved are few."""

    def accept(self, offer: str) -> None:
        return None


# simple-websocket offers permessage-deflate to every client and has no setting against it.
simple_websocket.ws.PerMessageDeflate = _DeclinedDeflate
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
