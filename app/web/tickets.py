"""One-use tickets that open a room socket, so long-lived access tokens never travel in URLs.

`POST /api/v1/ws-tickets` (with the bearer token) stores a random ticket in Redis for a minute;
`/ws/sessions/<id>?ticket=` takes it with GETDEL, so it works once, for that session only, on any
web process.
"""
from __future__ import annotations

import json
import secrets
import uuid

from app.accounts.tokens import Principal
from app.core import redis_keys

TICKET_TTL_S = 60


def _key(ticket: str) -> str:
    return redis_keys.key(f"ws-ticket:{ticket}")


def issue(redis, principal: Principal, session_id: uuid.UUID) -> str:
    ticket = secrets.token_urlsafe(32)
    redis.set(_key(ticket), json.dumps({"u": str(principal.user_id), "g": principal.is_guest,
                                        "i": principal.issued_at_ms, "s": str(session_id)}), ex=TICKET_TTL_S)
    return ticket


def redeem(redis, ticket: str, session_id: uuid.UUID) -> Principal | None:
    """The holder of `ticket` if it is valid for `session_id`; the ticket is spent either way."""
    if not ticket or len(ticket) > 100:
        return None
    raw = redis.getdel(_key(ticket))
    if raw is None:
        return None
    data = json.loads(raw)
    if data["s"] != str(session_id):
        return None
    return Principal(user_id=uuid.UUID(data["u"]), is_guest=bool(data["g"]), issued_at_ms=int(data["i"]))
