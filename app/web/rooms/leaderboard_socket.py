"""Live boards over WebSocket, open to anyone (boards.py has how they move).

- `/ws/leaderboards/<id>?top=10&player=<player_id>`: one board; its top N first, then a
  `leaderboard_update` whenever that top N changes, and the player's `standing` when it changes.
- `/ws`: seed 001's protocol, many boards on one socket: `{"type": "subscribe", "leaderboard_id":
  "game1", "top": 10, "player_id": "..."}` (top and player optional) and `{"type": "unsubscribe",
  "leaderboard_id": "game1"}`, answered with `subscribed` / `unsubscribed`, then the same messages.
"""
from __future__ import annotations

import json
import re

from flask import Blueprint, current_app, request
from redis import RedisError

from app.core.errors import NotFound, TooManyRequests
from app.leaderboards.domain import BOARD_ID
from app.web.extensions import board_reader, rate_limits, room_hub, sock, web_metrics
from app.web.ratelimits import limit
from app.web.rooms.connection import Connection
from app.web.rooms.frames import frame_trier, frame_writer, socket_closer
from app.web.rooms.leaderboards import MAX_TOP, Watch
from app.web.rooms.socket import CLOSE_TOO_MANY, CLOSE_TRY_LATER, answer_client, client_error

bp = Blueprint("board_sockets", __name__)

CLOSE_BAD_REQUEST = 4400
CLOSE_NOT_FOUND = 4404
MAX_SUBSCRIPTIONS = 20
DEFAULT_TOP = 10
_PLAYER = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")


class BadWatch(ValueError):
    """A watch asked for with a top or a player the service does not serve."""


def _watch(connection: Connection, board_id, top, player_id) -> Watch:
    if not isinstance(board_id, str) or not BOARD_ID.fullmatch(board_id):
        raise BadWatch("leaderboard_id: a board id such as game1")
    if top is None:
        top = DEFAULT_TOP
    try:
        top = int(top)
    except (TypeError, ValueError):
        raise BadWatch(f"top: an integer from 1 to {MAX_TOP}") from None
    if isinstance(top, bool) or not 1 <= top <= MAX_TOP:
        raise BadWatch(f"top: an integer from 1 to {MAX_TOP}")
    if player_id is not None and (not isinstance(player_id, str) or not _PLAYER.fullmatch(player_id)):
        raise BadWatch("player: a player id (1 to 128 characters, no control characters)")
    return Watch(connection, board_id, top, player_id)


def _start(watch: Watch) -> None:
    """Watch the board and send its state now; NotFound (and nothing watched) when there is no board."""
    hub = room_hub()
    hub.watch(watch, hub.board_tail(watch.board_id))
    try:
        hub.show(watch)
    except BaseException:
        hub.unwatch(watch)
        raise


def _open(ws) -> Connection | None:
    """A connection for a board socket, or None when the socket was refused (rate limit, Redis away)."""
    try:
        rate_limits().hit(limit("sockets_per_address"))
    except TooManyRequests as exc:
        ws.close(reason=CLOSE_TOO_MANY, message=exc.message)
        return None
    except RedisError:
        ws.close(reason=CLOSE_TRY_LATER, message="the service is briefly unavailable; reconnect")
        return None
    config, metrics = current_app.config["LIVEQUIZ"], web_metrics()
    return Connection(frame_writer(ws), None, participant_id=None, max_buffered=config.ws_send_buffer,
                      on_drop=metrics.ws_dropped, on_sent=metrics.ws_sent,
                      close=socket_closer(ws), try_send=frame_trier(ws))


def _serve(ws, connection: Connection, watches: dict[str, Watch], handle=None) -> None:
    hub, metrics = room_hub(), web_metrics()  # taken now: `finally` may run without the app
    metrics.ws_connections.inc()
    try:
        connection.start_sender()
        answer_client(ws, connection, handle)
    finally:
        connection.finish()
        for watch in list(watches.values()):
            hub.unwatch(watch)
        metrics.ws_connections.dec()


@sock.route("/ws/leaderboards/<board_id>", bp=bp, heartbeat=True)
def board_socket(ws, board_id: str):
    """One board's top N (?top=, default 10) and, with ?player=, that player's standing."""
    connection = _open(ws)
    if connection is None:
        return
    try:
        watch = _watch(connection, board_id, request.args.get("top"), request.args.get("player"))
        _start(watch)
    except BadWatch as exc:
        return ws.close(reason=CLOSE_BAD_REQUEST, message=str(exc))
    except NotFound:
        return ws.close(reason=CLOSE_NOT_FOUND, message="no such board")
    except RedisError:
        return ws.close(reason=CLOSE_TRY_LATER, message="the service is briefly unavailable; reconnect")
    _serve(ws, connection, {board_id: watch})


@sock.route("/ws", bp=bp, heartbeat=True)
def subscriptions(ws):
    """Seed 001's protocol: subscribe to and unsubscribe from boards on one socket."""
    connection = _open(ws)
    if connection is None:
        return
    watches: dict[str, Watch] = {}
    hub = room_hub()

    def handle(message: dict) -> dict | None:
        kind, board_id = message.get("type"), message.get("leaderboard_id")
        if kind == "unsubscribe":
            watch = watches.pop(board_id, None) if isinstance(board_id, str) else None
            if watch is not None:
                hub.unwatch(watch)
            return {"type": "unsubscribed", "leaderboard_id": board_id}
        if kind != "subscribe":
            return client_error("unknown_message", "send subscribe, unsubscribe or ping")
        if board_id not in watches and len(watches) >= MAX_SUBSCRIPTIONS:
            return client_error("too_many_subscriptions", f"at most {MAX_SUBSCRIPTIONS} boards per socket")
        try:
            watch = _watch(connection, board_id, message.get("top"), message.get("player_id"))
        except BadWatch as exc:
            return client_error("invalid_subscription", str(exc))
        try:
            board_reader().period(board_id, None)  # 404 before anything is sent
            if board_id in watches:  # a new top or player for a board already watched
                hub.unwatch(watches.pop(board_id))
            connection.offer("subscribed", json.dumps({"type": "subscribed", "leaderboard_id": board_id}))
            _start(watch)
        except NotFound:
            return client_error("not_found", f"no board {board_id!r}")
        except RedisError:
            return client_error("unavailable", "the service is briefly unavailable; subscribe again")
        watches[board_id] = watch
        return None

    _serve(ws, connection, watches, handle)

