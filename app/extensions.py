"""What the blueprints and handlers of the web process reach: the socket extension (unbound, attached
in `create_app`), the process's runtime and the request's database session."""
from __future__ import annotations

from functools import wraps
from typing import TYPE_CHECKING

import simple_websocket.ws
from flask import current_app, g
from flask_sock import Sock
from sqlalchemy.orm import Session
from wsproto.extensions import PerMessageDeflate

if TYPE_CHECKING:
    from app.runtime import Runtime

# Every socket's address is over its WS_MAX_PER_ADDRESS: closed at once (app/rooms/slots.py counts them).
CLOSE_TOO_MANY_SOCKETS = 4429


class CountedSock(Sock):
    """flask-sock whose every socket route first takes a slot of the client's address, across every web
    process: beyond WS_MAX_PER_ADDRESS open at once, a new socket is closed with 4429 before its
    handler runs (the slot is given back when the handler returns)."""

    def route(self, path, bp=None, **kwargs):
        register = super().route(path, bp, **kwargs)

        def decorator(handler):
            @wraps(handler)
            def counted(ws, *args, **kw):
                from app.ratelimits import client_address

                with runtime().socket_slots.address(client_address()) as taken:
                    if not taken:
                        limit = current_app.config["LIVEQUIZ"].ws_max_per_address
                        return ws.close(reason=CLOSE_TOO_MANY_SOCKETS, message=(
                            f"too many open sockets from your address (at most {limit}); close one or try again later"))
                    return handler(ws, *args, **kw)

            return register(counted)

        return decorator


sock = CountedSock()


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
