"""`/ws/sessions/<id>`: the live room of a session, for its host and its players."""
from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable

from flask import Blueprint, current_app, request
from pydantic import ValidationError
from redis import RedisError
from simple_websocket import ConnectionClosed

from app.accounts import users
from app.accounts.tokens import Principal
from app.core.errors import Forbidden, NotFound, ServiceError, TooManyRequests
from app.core.json_input import JsonInputError, decode_json
from app.core.validation import describe_validation
from app.quiz.service import rooms as room_service
from app.quiz.service.answers import AnswerRequest
from app.web import tickets
from app.web.api.schemas import SocketAnswer
from app.web.extensions import (
    answer_batcher,
    engine,
    rate_limits,
    redis_client,
    room_hub,
    signed_in,
    sock,
    socket_slots,
    web_metrics,
)
from app.web.failures import INTERNAL_MESSAGE, STORE_UNAVAILABLE, UNAVAILABLE_MESSAGE
from app.web.ratelimits import limit
from app.web.rooms.connection import Connection
from app.web.rooms.frames import frame_trier, frame_writer, pong_check, socket_closer
from app.web.rooms.joins import Turn
from app.web.rooms.room import now_iso
from app.web.rooms.signed_in import SIGNED_OUT

log = logging.getLogger(__name__)
bp = Blueprint("rooms", __name__)

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_MANY = 4429
CLOSE_TRY_LATER = 1013
RECONNECT_LATER = "the service is briefly unavailable; reconnect"
# Client messages are tiny JSON objects; a bigger one gets an `error`. Frames above the transport's
# own limit (SOCK_SERVER_OPTIONS, 64 KiB) close the socket.
MAX_CLIENT_MESSAGE = 4096
# A client may send this many messages in a burst, refilled at this rate; more closes the socket.
MESSAGE_BURST = 20
MESSAGES_PER_S = 5.0
# A player's answer over the room socket, and its acknowledgement (sent once the answer is committed).
ANSWER = "answer"
ANSWER_RECORDED = "answer_recorded"


def _refuse(ws, code: int, reason: str) -> None:
    ws.close(reason=code, message=reason)


@sock.route("/ws/sessions/<session_id>", bp=bp, heartbeat=True)
def room_socket(ws, session_id: str):
    """The room of a session for its host and players, opened with a one-use ticket
    (POST /api/v1/ws-tickets)."""
    config = current_app.config["LIVEQUIZ"]
    if "access_token" in request.args:
        return _refuse(ws, CLOSE_UNAUTHORIZED,
                       "access tokens do not belong in URLs: open the room with a ticket")
    try:
        session = uuid.UUID(session_id)
    except ValueError:
        return _refuse(ws, CLOSE_FORBIDDEN, "no such session")
    # The ticket is spent before the socket waits for its turn: it lives TICKET_TTL_S from its issue, and
    # in a join storm the turn comes up to WS_JOIN_WAIT_S after a slow handshake. Spent after the wait, it
    # had expired, and the page takes that 4401 for a signed-out player (it forgets the player's place).
    try:
        rate_limits().hit(limit("sockets_per_address"))
        principal = tickets.redeem(redis_client(), request.args.get("ticket", ""), session)
    except TooManyRequests as exc:
        return _refuse(ws, CLOSE_TOO_MANY, exc.message)
    except RedisError:
        return _refuse(ws, CLOSE_TRY_LATER, RECONNECT_LATER)
    if principal is None:
        return _refuse(ws, CLOSE_UNAUTHORIZED, "ticket invalid, expired or already used")
    # A join storm is admitted a bounded number at a time (joins.py); the turn ends once the socket is in.
    turn = room_hub().join_gate.take()
    if turn is None:
        return _refuse(ws, CLOSE_TRY_LATER, "the server is busy letting players in; reconnect")
    with turn:
        if not ws.connected:  # its client left while it waited (a reload, a closed tab): the next one's turn
            return
        with socket_slots().user(principal.user_id) as taken:
            if not taken:
                return _refuse(ws, CLOSE_TOO_MANY, f"too many open sockets of this user (at most "
                                                   f"{config.ws_max_per_user}); close one or try again later")
            _serve_room(ws, session, principal, turn)


def _serve_room(ws, session: uuid.UUID, principal: Principal, turn: Turn) -> None:
    config = current_app.config["LIVEQUIZ"]
    try:
        member = room_service.room_member(engine(), session, principal.user_id)
    except (NotFound, Forbidden) as exc:
        return _refuse(ws, CLOSE_FORBIDDEN, exc.message)
    except STORE_UNAVAILABLE:  # PostgreSQL away or its pool busy: the page reconnects, as after a 1013
        return _refuse(ws, CLOSE_TRY_LATER, RECONNECT_LATER)

    hub, metrics, signed_in_sockets = room_hub(), web_metrics(), signed_in()
    connection = Connection(frame_writer(ws), session, participant_id=member.participant_id,
                            is_host=member.is_host, max_buffered=config.ws_send_buffer,
                            on_drop=metrics.ws_dropped, on_sent=metrics.ws_sent,
                            close=socket_closer(ws), try_send=frame_trier(ws))
    if not signed_in_sockets.admit(connection, principal):  # the ticket's token was revoked
        return _refuse(ws, CLOSE_UNAUTHORIZED, SIGNED_OUT)
    try:
        # Join first, then read the snapshot: what happens in between is queued behind the snapshot, not lost.
        hub.join(connection, hub.stream_tail(session))
        try:
            hub.register(connection, principal.user_id, config.ws_max_per_participant)
            version, snapshot = hub.snapshot(connection)
            connection.offer_snapshot(version, snapshot)
            connection.start_sender()
            turn.release()  # in the room: the next join may start
            answers = None if member.is_host else answers_over_socket(session, principal, connection)
            answer_client(ws, connection, answers)
        finally:
            connection.finish()
            hub.leave(connection, principal.user_id)
    finally:
        signed_in_sockets.release(connection, principal)


def answers_over_socket(session: uuid.UUID, principal: Principal,
                        connection: Connection) -> Callable[[dict], dict]:
    """`{"type": "answer", "question_id", "choice", "ref"?}` from a player: the same checks, scoring, group
    commit and retry safety as `POST /answers`, acknowledged only after the commit. The reply is
    `answer_recorded` (the receipt, `replayed` on a retry) or an `error` with the HTTP path's `code`
    (and its extras, e.g. the recorded receipt of `already_answered`); `ref`, if sent, comes back. An
    answer after the socket's token was revoked is not recorded: the socket closes with 4401."""
    batcher, user_id = answer_batcher(), principal.user_id
    store, cache = engine(), redis_client()  # taken now: an answer is handled outside the app's context

    def handle(message: dict) -> dict:
        ref = message.get("ref")
        if message.get("type") != ANSWER:
            return client_error("unknown_message", "client messages are ping and answer")
        try:
            answer = SocketAnswer.model_validate(message)
        except ValidationError as exc:
            return {**client_error("invalid_message", describe_validation(exc)), "ref": ref}
        try:
            if users.is_revoked(store, cache, principal):  # before the logout reached this process
                connection.close_with(CLOSE_UNAUTHORIZED, SIGNED_OUT)
                return {**client_error("unauthorized", SIGNED_OUT), "ref": answer.ref}
            receipt = batcher.submit(AnswerRequest(user_id, session, uuid.UUID(answer.question_id),
                                                   answer.choice))
        except ServiceError as exc:
            return {**client_error(exc.code, exc.message), **exc.extra, "ref": answer.ref}
        except STORE_UNAVAILABLE as exc:  # not recorded: the player may send it again, as after a 503
            log.warning("an answer over the socket was not recorded, a store is unavailable: %s",
                        type(exc).__name__)
            return {**client_error("unavailable", UNAVAILABLE_MESSAGE), "ref": answer.ref}
        except Exception:  # noqa: BLE001 - as a 500: the socket stays open for the next message
            log.exception("an answer over the socket failed")
            return {**client_error("internal_error", INTERNAL_MESSAGE), "ref": answer.ref}
        return {"type": ANSWER_RECORDED, **receipt.view(), "replayed": receipt.replayed, "ref": answer.ref}

    return handle


def answer_client(ws, connection: Connection, handle: Callable[[dict], dict | None] | None = None) -> None:
    """Client messages: `ping` gets `pong`; any other JSON object goes to `handle`, whose reply (if any)
    is sent (without a handler it gets an `error`); a flood closes the socket. The process's heartbeat
    pings the socket meanwhile, and closes it once the client stays silent too long."""
    heartbeat = room_hub().heartbeat
    heartbeat.watch(connection, pong_check(ws))
    try:
        _receive_messages(ws, connection, handle)
    finally:
        heartbeat.forget(connection)


def _receive_messages(ws, connection: Connection, handle: Callable[[dict], dict | None] | None) -> None:
    allowance, refilled = float(MESSAGE_BURST), time.monotonic()
    while connection.is_open:
        try:
            raw = ws.receive(timeout=30)
        except ConnectionClosed:
            return
        if raw is None:
            continue
        now = time.monotonic()
        connection.heard(now)
        allowance = min(MESSAGE_BURST, allowance + (now - refilled) * MESSAGES_PER_S) - 1
        refilled = now
        if allowance < 0:
            connection.close_with(CLOSE_TOO_MANY, "too many messages")
            return
        reply = _reply_to(raw, handle)
        if reply is not None:
            connection.offer(reply["type"], json.dumps(reply))


def _reply_to(raw: str | bytes, handle: Callable[[dict], dict | None] | None) -> dict | None:
    if len(raw) > MAX_CLIENT_MESSAGE:
        return client_error("message_too_large", "client messages are small JSON objects")
    try:
        message = decode_json(raw)
    except JsonInputError as exc:  # malformed or nested too deep: the socket stays open
        return client_error("invalid_json", f"{exc}; send JSON objects such as {{\"type\": \"ping\"}}")
    if isinstance(message, dict) and message.get("type") == "ping":
        return {"type": "pong", "server_time": now_iso()}
    if handle is None or not isinstance(message, dict):
        return client_error("unknown_message", "the only client message here is ping")
    return handle(message)


def client_error(code: str, message: str) -> dict:
    return {"type": "error", "code": code, "message": message}
