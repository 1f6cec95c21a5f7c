"""`/ws/sessions/<id>`: the live room of a session, for its host and its players."""
from __future__ import annotations

import json
import logging
import threading
import uuid

from flask import Blueprint, current_app, request
from simple_websocket import ConnectionClosed

from app.extensions import services, sock
from app.rooms.connection import Connection
from app.rooms.hub import now_iso
from app.services import rooms as room_service
from app.services.errors import Forbidden, NotFound
from app.tokens import InvalidToken, read_token

log = logging.getLogger(__name__)
bp = Blueprint("rooms", __name__)

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
MAX_CLIENT_MESSAGE = 4096


def _refuse(ws, code: int, reason: str) -> None:
    ws.close(reason=code, message=reason)


@sock.route("/ws/sessions/<session_id>", bp=bp)
def room_socket(ws, session_id: str):
    config = current_app.config["LIVEQUIZ"]
    try:
        principal = read_token(config.secret_key, request.args.get("access_token", ""), config.token_ttl_s)
    except InvalidToken as exc:
        return _refuse(ws, CLOSE_UNAUTHORIZED, exc.reason)
    try:
        session = uuid.UUID(session_id)
    except ValueError:
        return _refuse(ws, CLOSE_FORBIDDEN, "no such session")
    live = services()
    db = live.sessions()
    try:
        member = room_service.room_member(db, session, principal.user_id)
    except (NotFound, Forbidden) as exc:
        return _refuse(ws, CLOSE_FORBIDDEN, exc.message)
    finally:
        db.close()

    hub = live.room_hub
    connection = Connection(ws.send, session, participant_id=member.participant_id, is_host=member.is_host,
                            max_buffered=config.ws_send_buffer, on_drop=live.metrics.ws_dropped,
                            on_sent=live.metrics.ws_sent, close=lambda code, reason: ws.close(code, reason))
    # Join first, then read the snapshot: what happens in between is queued behind the snapshot, not lost.
    hub.join(connection, hub.stream_tail(session))
    try:
        [(_, version, snapshot)] = hub.snapshots(session, [connection])
        connection.offer_snapshot(version, snapshot)
        threading.Thread(target=connection.run_sender, name="ws-sender", daemon=True).start()
        _answer_client(ws, connection)
    finally:
        hub.leave(connection)


def _answer_client(ws, connection: Connection) -> None:
    """Client messages: `ping` gets `pong`; anything else gets an `error`, never a dropped socket."""
    while connection.is_open:
        try:
            raw = ws.receive(timeout=30)
        except ConnectionClosed:
            return
        if raw is None:
            continue
        reply = _reply_to(raw)
        connection.offer(reply["type"], json.dumps(reply))


def _reply_to(raw: str | bytes) -> dict:
    if len(raw) > MAX_CLIENT_MESSAGE:
        return {"type": "error", "code": "message_too_large", "message": "client messages are small JSON objects"}
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {"type": "error", "code": "invalid_json", "message": "send JSON objects such as {\"type\": \"ping\"}"}
    if not isinstance(message, dict) or message.get("type") != "ping":
        return {"type": "error", "code": "unknown_message", "message": "the only client message is ping"}
    return {"type": "pong", "server_time": now_iso()}
