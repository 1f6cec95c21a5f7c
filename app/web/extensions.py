"""What the blueprints and handlers of the web process reach: the socket extension (unbound, attached
in `create_app`), the request's database session, and each piece of the process's runtime.

A handler gets what it uses from the composition root (runtime.py) through one typed accessor per
piece (`engine()`, `board_reader()`, `rate_limits()`...), named in its module's imports: blueprints stay
module-level, as Flask registers them and as the OpenAPI document reads their routes once, while no
handler reaches into the runtime as a whole. A piece a thread outside the request needs is taken
while the request is served (the app context is gone on that thread)."""
from __future__ import annotations

import time
from functools import wraps
from typing import TYPE_CHECKING

import flask_sock
import simple_websocket
import simple_websocket.ws
from flask import current_app, g, request
from flask_sock import Sock
from simple_websocket import ConnectionClosed
from sqlalchemy.orm import Session
from wsproto.connection import ConnectionState
from wsproto.extensions import PerMessageDeflate
from wsproto.utilities import LocalProtocolError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from app.accounts.hashing import PasswordHashing
    from app.core.metrics import WebMetrics
    from app.core.redis_client import Client
    from app.leaderboards.board.reads import LeaderboardReader
    from app.leaderboards.service.batcher import ScoreBatcher
    from app.quiz.service.answers import AnswerBatcher
    from app.web.ratelimits import RateLimits
    from app.web.rooms.hub import RoomHub
    from app.web.rooms.signed_in import SignedInSockets
    from app.web.rooms.slots import SocketSlots
    from app.web.runtime import Runtime

# Every socket's address is over its WS_MAX_PER_ADDRESS: closed at once (app/web/rooms/slots.py counts them).
CLOSE_TOO_MANY_SOCKETS = 4429
# How long a socket the server closed stays open for the client's close frame (`finish_closing`).
CLOSE_HANDSHAKE_S = 2.0


class CountedSock(Sock):
    """flask-sock whose every socket route first takes a slot of the client's address, across every web
    process: beyond WS_MAX_PER_ADDRESS open at once, a new socket is closed with 4429 before its
    handler runs (the slot is given back when the handler returns). Every socket ends with the closing
    handshake (`finish_closing`), so the close code reaches the client.

    `heartbeat=True`: the route's sockets are watched by the process's heartbeat (rooms/heartbeat.py),
    which pings them and closes the silent ones, so simple-websocket sends them no pings of its own
    (`_server`)."""

    def route(self, path, bp=None, *, heartbeat: bool = False, **kwargs):
        register = super().route(path, bp, **kwargs)

        def decorator(handler):
            @wraps(handler)
            def counted(ws, *args, **kw):
                from app.web.ratelimits import client_address

                try:
                    with socket_slots().address(client_address()) as taken:
                        if not taken:
                            limit = current_app.config["LIVEQUIZ"].ws_max_per_address
                            return ws.close(reason=CLOSE_TOO_MANY_SOCKETS, message=(
                                f"too many open sockets from your address (at most {limit}); "
                                "close one or try again later"))
                        return handler(ws, *args, **kw)
                finally:
                    finish_closing(ws)

            counted.watched_by_heartbeat = heartbeat  # on flask-sock's view too (functools.wraps)
            return register(counted)

        return decorator


sock = CountedSock()


def _server(environ, **options) -> simple_websocket.Server:
    """flask-sock's Server for the socket of this request: SOCK_SERVER_OPTIONS, without the library's own
    pings on a route the heartbeat watches. With a ping interval, simple-websocket's reader waits for
    each frame in a selector with a timeout (a watcher started and stopped, an event set and a timer, for
    every pong); without one it waits in the socket's own read. The heartbeat's pongs alone are a
    thousand a second per worker holding 5,000 sockets: in a loaded worker the selector's wake-ups took
    a fifth of its samples, the time a question's close waited behind."""
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    if getattr(view, "watched_by_heartbeat", False):
        options = {**options, "ping_interval": None}
    return simple_websocket.Server(environ, **options)


flask_sock.Server = _server  # flask-sock builds each socket's Server with the name it imported


def finish_closing(ws, timeout_s: float = CLOSE_HANDSHAKE_S) -> None:
    """The end of every socket handler: close `ws` (1000 when the handler left it open), then wait at most
    `timeout_s` for the client's close frame (RFC 6455, 7.1.1), dropping what the client still sends.
    Closing the TCP connection at once, with the client's messages unread (a flood goes on arriving after
    its 4429), makes the kernel answer with a reset, which can destroy the close frame on its way: the client,
    or the balancer in between, then sees a connection dropped without its code."""
    if ws.ws.state is ConnectionState.OPEN:
        try:
            ws.close()
        except (ConnectionClosed, LocalProtocolError, OSError):
            return
    if ws.ws.state is not ConnectionState.LOCAL_CLOSING:
        return  # the client closed first (answered already), or the connection is gone
    deadline = time.monotonic() + timeout_s
    while ws.thread.is_alive() and time.monotonic() < deadline:
        ws.input_buffer.clear()  # read by simple-websocket's thread, answered by nobody any more
        ws.thread.join(0.05)


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


def _runtime() -> Runtime:
    """The current app's runtime (app/web/runtime.py), built by `create_app`."""
    return current_app.extensions[RUNTIME]


def engine() -> Engine:
    return _runtime().engine


def new_db_session() -> Session:
    """A database session of its own (the caller closes it); a request's is `get_db`."""
    return _runtime().db_sessions()


def redis_client() -> Client:
    return _runtime().redis


def kafka_admin():
    return _runtime().kafka_admin


def answer_batcher() -> AnswerBatcher:
    return _runtime().answer_batcher


def score_batcher() -> ScoreBatcher:
    return _runtime().score_batcher


def rate_limits() -> RateLimits:
    return _runtime().rate_limits


def password_hashing() -> PasswordHashing:
    return _runtime().password_hashing


def board_reader() -> LeaderboardReader:
    return _runtime().board_reader


def web_metrics() -> WebMetrics:
    return _runtime().metrics


def socket_slots() -> SocketSlots:
    return _runtime().socket_slots


def signed_in() -> SignedInSockets:
    return _runtime().signed_in


def room_hub() -> RoomHub:
    return _runtime().room_hub


def get_db() -> Session:
    """The request's database session, opened lazily and closed at teardown."""
    if "db" not in g:
        g.db = new_db_session()
    return g.db


def close_db(_exc: BaseException | None = None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()
