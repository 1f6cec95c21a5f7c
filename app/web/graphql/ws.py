"""GraphQL over WebSocket on `/graphql`: the graphql-transport-ws protocol (enisdenjo/graphql-ws's
PROTOCOL.md), subscriptions fed by the same hub as the live boards.

The client offers the subprotocol `graphql-transport-ws` (else 4406), sends `connection_init` within
GRAPHQL_INIT_WAIT_S (else 4408; twice: 4429), optionally with `{"Authorization": "Bearer ..."}` in
its payload (any credential POST /graphql takes; a bad one closes with 4403) for mutations, and gets
`connection_ack`. Then `subscribe` {id, payload: {query, variables, operationName}}: a subscription
(`boardTop`, `playerStanding`) gets `next` with its first state, then a `next` whenever what it
selects changed (app/web/rooms/leaderboards.py decides when), until the client sends `complete`; a query or a
mutation gets one `next` then `complete`; an operation that cannot run, or that a rate limit refused,
gets `error`. Each `subscribe` is checked and charged as a `POST /graphql` of the same operation
(guards.py). `ping` gets `pong`. A `subscribe` before the ack closes with 4401, an id in use with
4409, anything unreadable (not JSON, nested too deeply, over 64 KiB) with 4400, more messages than the
room sockets allow (a burst of MESSAGE_BURST, then MESSAGES_PER_S a second) with 4429, and a failure
of ours with 1011.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from flask import Blueprint, current_app
from redis import RedisError
from simple_websocket import ConnectionClosed

from app.core.errors import NotFound, ServiceError, TooManyRequests
from app.core.json_input import JsonInputError, decode_json
from app.leaderboards.spans import SPAN_FIELDS
from app.web.api.core import ApiError, bearer_token, principal_from_token
from app.web.extensions import rate_limits, room_hub, signed_in, sock, web_metrics
from app.web.graphql.execution import RequestError, checked_operation, is_subscription, refusal, run
from app.web.graphql.guards import Caller, charge_document, charge_operation
from app.web.graphql.http import make_context
from app.web.ratelimits import client_address, limit
from app.web.rooms.connection import Connection
from app.web.rooms.frames import frame_writer
from app.web.rooms.leaderboards import BOARD_DELETED, STANDING, UPDATE, Watch
from app.web.rooms.socket import MESSAGE_BURST, MESSAGES_PER_S

log = logging.getLogger(__name__)
bp = Blueprint("graphql_ws", __name__)

PROTOCOL = "graphql-transport-ws"
MAX_SUBSCRIPTIONS = 20
MAX_MESSAGE_CHARS = 64 * 1024
CLOSE_BAD_MESSAGE, CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN = 4400, 4401, 4403
CLOSE_SUBPROTOCOL, CLOSE_INIT_TIMEOUT, CLOSE_DUPLICATE, CLOSE_TOO_MANY = 4406, 4408, 4409, 4429
CLOSE_INTERNAL_ERROR = 1011
CLOSE_LINGER_S = 2.0
# Which live-board message feeds which subscription field, and the field's board argument.
_FEEDS = {"boardTop": UPDATE, "playerStanding": STANDING}


def _dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


class Subscription:
    """One subscription of a socket: it stands where boards.py expects a connection, and turns each
    state it is offered into the subscription's `next` (its selection executed on that state)."""

    def __init__(self, sub_id: str, connection: Connection, document, operation, variables, context,
                 feed: str):
        self.id, self.connection, self.feed = sub_id, connection, feed
        self.document, self.operation, self.variables, self.context = document, operation, variables, context
        self.watch: Watch | None = None

    def offer(self, kind: str, text: str) -> bool:
        if kind == BOARD_DELETED:
            return self.connection.offer("error", _dumps({"id": self.id, "type": "error", "payload": [
                {"message": "the board was deleted", "extensions": {"code": "not_found"}}]}))
        return False  # a period's close: the next state is the new period's

    def offer_latest(self, kind: str, version: int, text: str) -> bool:
        message = json.loads(text)
        if message["type"] != self.feed:
            return False
        result = run(self.document, self.operation, self.variables, self.context, root=_event(message))
        return self.connection.offer_latest(f"{kind}:{self.id}", version,
                                            _dumps({"id": self.id, "type": "next", "payload": result}))


def _event(message: dict[str, Any]) -> dict[str, Any]:
    """A live-board message as the GraphQL type it feeds (Page or Standing)."""
    if message["type"] == UPDATE:
        return {"leaderboard_id": message["leaderboard_id"], "period": message["period"],
                **{k: message[k] for k in SPAN_FIELDS},
                "version": message["version"], "total": message["total"], "entries": message["entries"],
                "next_cursor": None}
    return {k: message.get(k) for k in ("leaderboard_id", "period", *SPAN_FIELDS, "version", "player_id",
                                         "rank", "score", "top_percent")}


class _Socket:
    def __init__(self, ws, connection: Connection, address: str):
        self.ws, self.connection = ws, connection
        self.acknowledged = False
        self.caller = Caller(address, None)
        self.principal = None  # a signed-in user's, once connection_init carried their token
        self.subscriptions: dict[str, Subscription] = {}
        self._allowance, self._refilled = float(MESSAGE_BURST), time.monotonic()

    def send(self, message: dict[str, Any]) -> None:
        self.connection.offer(message["type"], _dumps(message))

    def close(self, code: int, reason: str) -> None:
        """Close now with the protocol's code (what is queued is not sent). The socket's reader goes on,
        discarding, until the client answers the close (at most CLOSE_LINGER_S): the connection closed
        with messages of the client's still unread (a flood) is reset, and a reset client may never read
        the close frame and its code."""
        self.connection.close()
        try:
            self.ws.close(reason=code, message=reason)
        except Exception:  # noqa: BLE001 - the peer is gone already
            return
        self.ws.thread.join(CLOSE_LINGER_S)

    def handle(self, raw: Any) -> bool:
        """One client message; False once the socket is to close."""
        now = time.monotonic()
        self._allowance = min(MESSAGE_BURST, self._allowance + (now - self._refilled) * MESSAGES_PER_S) - 1
        self._refilled = now
        if self._allowance < 0:
            self.close(CLOSE_TOO_MANY, "Too many messages")
            return False
        if not isinstance(raw, (str, bytes)) or len(raw) > MAX_MESSAGE_CHARS:
            self.close(CLOSE_BAD_MESSAGE, "Invalid message received: over 64 KiB")
            return False
        try:
            message = decode_json(raw)
        except JsonInputError as exc:
            self.close(CLOSE_BAD_MESSAGE, f"Invalid message received: {exc}"[:120])
            return False
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            self.close(CLOSE_BAD_MESSAGE, "Invalid message received")
            return False
        kind = message["type"]
        if kind == "connection_init":
            return self._init(message.get("payload"))
        if kind == "ping":
            self.send({"type": "pong", **({"payload": message["payload"]} if "payload" in message else {})})
            return True
        if kind == "pong":
            return True
        if kind == "subscribe":
            return self._subscribe(message)
        if kind == "complete":
            self._stop(message.get("id"))
            return True
        self.close(CLOSE_BAD_MESSAGE, f"Invalid message received: unknown type {kind!r}")
        return False

    def _init(self, payload: Any) -> bool:
        if self.acknowledged:
            self.close(CLOSE_TOO_MANY, "Too many initialisation requests")
            return False
        if isinstance(payload, dict) and payload.get("Authorization"):
            authorization = str(payload["Authorization"])
            try:
                principal = principal_from_token(bearer_token(authorization), api_keys=True)
                # From here on a logout closes the socket (4401), in whichever process holds it; an API
                # key is checked again by every mutation sent with it.
                if not principal.via_api_key:
                    if not signed_in().admit(self.connection, principal):
                        raise ApiError(401, "unauthorized", "token revoked (signed out)")
                    self.principal = principal
            except ApiError:
                self.close(CLOSE_FORBIDDEN, "Forbidden: invalid or revoked access token")
                return False
            self.caller = Caller(self.caller.address, authorization)
        self.acknowledged = True
        self.send({"type": "connection_ack"})
        return True

    def _subscribe(self, message: dict[str, Any]) -> bool:
        if not self.acknowledged:
            self.close(CLOSE_UNAUTHORIZED, "Unauthorized")
            return False
        sub_id, payload = message.get("id"), message.get("payload")
        if not isinstance(sub_id, str) or not sub_id or len(sub_id) > 128 or not isinstance(payload, dict):
            self.close(CLOSE_BAD_MESSAGE, "Invalid message received: subscribe needs an id and a payload")
            return False
        if sub_id in self.subscriptions:
            self.close(CLOSE_DUPLICATE, f"Subscriber for {sub_id} already exists")
            return False
        variables = payload.get("variables")
        try:
            charge_document(self.caller)
            document, operation = checked_operation(payload.get("query"), payload.get("operationName"),
                                                    variables,
                                                    max_mutations=current_app.config["LIVEQUIZ"].graphql_max_mutations)
            charge_operation(self.caller, operation)
        except RequestError as exc:
            self.send({"id": sub_id, "type": "error", "payload": exc.errors})
            return True
        except TooManyRequests as exc:
            self.send({"id": sub_id, "type": "error", "payload": [
                refusal(exc.code, exc.message, retry_after_s=exc.retry_after_s)]})
            return True
        context = make_context(self.caller)
        if not is_subscription(operation):
            self.send({"id": sub_id, "type": "next", "payload": run(document, operation, variables, context)})
            self.send({"id": sub_id, "type": "complete"})
            return True
        if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            self.send({"id": sub_id, "type": "error", "payload": [
                refusal("too_many_subscriptions", f"at most {MAX_SUBSCRIPTIONS} subscriptions per socket")]})
            return True
        self._start(sub_id, document, operation, variables or {}, context)
        return True

    def _start(self, sub_id: str, document, operation, variables: dict[str, Any], context) -> None:
        field = operation.selection_set.selections[0]
        arguments = _arguments(field, variables)
        subscription = Subscription(sub_id, self.connection, document, operation, variables, context,
                                    _FEEDS[field.name.value])
        board_id = arguments.get("board_id")
        player_id = arguments.get("player_id")
        top = arguments.get("top", 10) if field.name.value == "boardTop" else 1
        if not isinstance(top, int) or not 1 <= top <= 100:
            self.send({"id": sub_id, "type": "error", "payload": [
                {"message": "top: an integer from 1 to 100", "extensions": {"code": "invalid_request"}}]})
            return
        subscription.watch = Watch(subscription, str(board_id), top,
                                   None if player_id is None else str(player_id))
        hub = room_hub()
        self.subscriptions[sub_id] = subscription
        try:
            hub.watch(subscription.watch, hub.board_tail(subscription.watch.board_id))
            hub.show(subscription.watch)
        except (NotFound, ServiceError, RedisError) as exc:
            hub.unwatch(subscription.watch)
            del self.subscriptions[sub_id]
            code = exc.code if isinstance(exc, ServiceError) else "unavailable"
            message = exc.message if isinstance(exc, ServiceError) else "the service is briefly unavailable"
            self.send({"id": sub_id, "type": "error",
                       "payload": [{"message": message, "extensions": {"code": code}}]})

    def _stop(self, sub_id: Any) -> None:
        subscription = self.subscriptions.pop(sub_id, None) if isinstance(sub_id, str) else None
        if subscription is not None and subscription.watch is not None:
            room_hub().unwatch(subscription.watch)

    def stop_all(self) -> None:
        for sub_id in list(self.subscriptions):
            self._stop(sub_id)


def _arguments(field, variables: dict[str, Any]) -> dict[str, Any]:
    from graphql import value_from_ast_untyped

    return {a.name.value: value_from_ast_untyped(a.value, variables) for a in field.arguments or ()}


@sock.route("/graphql", bp=bp)
def graphql_socket(ws):
    """GraphQL subscriptions (and queries and mutations) over graphql-transport-ws."""
    if ws.subprotocol != PROTOCOL:
        return ws.close(reason=CLOSE_SUBPROTOCOL, message="Subprotocol not acceptable")
    metrics, signed_in_sockets = web_metrics(), signed_in()  # taken now: `finally` may run without the app
    try:
        rate_limits().hit(limit("sockets_per_address"))
    except TooManyRequests as exc:
        return ws.close(reason=CLOSE_TOO_MANY, message=exc.message)
    except RedisError:
        return ws.close(reason=1013, message="the service is briefly unavailable; reconnect")
    config = current_app.config["LIVEQUIZ"]
    connection = Connection(frame_writer(ws), None, participant_id=None, max_buffered=config.ws_send_buffer,
                            on_drop=metrics.ws_dropped, on_sent=metrics.ws_sent,
                            close=lambda code, reason: ws.close(code, reason))
    socket = _Socket(ws, connection, client_address())
    metrics.ws_connections.inc()
    threading.Thread(target=connection.run_sender, name="ws-sender", daemon=True).start()
    opened = time.monotonic()
    try:
        while connection.is_open:
            wait = (None if socket.acknowledged
                    else max(0.0, config.graphql_init_wait_s - (time.monotonic() - opened)))
            try:
                raw = ws.receive(timeout=30 if wait is None else wait)
            except ConnectionClosed:
                return
            if raw is None:
                if not socket.acknowledged:
                    socket.close(CLOSE_INIT_TIMEOUT, "Connection initialisation timeout")
                    return
                continue
            try:
                if not socket.handle(raw):
                    return
            except Exception:  # as a 500: logged, and the socket closes with the protocol's code
                log.exception("a GraphQL socket message failed")
                socket.close(CLOSE_INTERNAL_ERROR, "Internal error")
                return
    finally:
        socket.stop_all()
        connection.close()
        if socket.principal is not None:
            signed_in_sockets.release(connection, socket.principal)
        metrics.ws_connections.dec()
