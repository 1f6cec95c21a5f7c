"""Sockets opened with a user's access token: a logout closes them (4401) in whichever process holds them.

A logout (app/accounts/users.py) appends the user, and the instant before which their tokens are
refused, to the stream `token-revocations`; the hub of every web process reads it with its rooms'
streams, and this registry closes each socket it holds whose token was issued before that instant.
`admit` holds a socket before it checks its token, so a logout is either refused by the check or seen
by the registry after it; the stream is read from its first entry, so no logout still kept there is
missed, whenever the process started reading.
"""
from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from sqlalchemy import Engine

from app.accounts.tokens import Principal
from app.accounts.users import is_revoked, revocations_stream
from app.web.rooms.connection import Connection
from app.web.rooms.hub import RoomHub

log = logging.getLogger(__name__)

CLOSE_SIGNED_OUT = 4401
SIGNED_OUT = "signed out: this socket's access token was revoked"


class SignedInSockets:
    def __init__(self, hub: RoomHub, engine: Engine, redis):
        self.hub, self.engine, self.redis = hub, engine, redis
        self._held: dict[uuid.UUID, dict[Connection, Principal]] = {}
        self._lock = threading.Lock()
        self._following = False

    def admit(self, connection: Connection, principal: Principal) -> bool:
        """False when `principal`'s token is revoked already; else `connection` is closed (4401) when a
        logout revokes it, until it is `release`d."""
        with self._lock:
            self._held.setdefault(principal.user_id, {})[connection] = principal
            following, self._following = self._following, True
        if not following:
            self.hub.follow(revocations_stream(), self._revoked)
        if is_revoked(self.engine, self.redis, principal):
            self.release(connection, principal)
            return False
        return True

    def release(self, connection: Connection, principal: Principal) -> None:
        with self._lock:
            held = self._held.get(principal.user_id, {})
            held.pop(connection, None)
            if not held:
                self._held.pop(principal.user_id, None)

    def _revoked(self, notes: list[dict[str, Any]]) -> None:
        for note in notes:
            try:
                user_id, valid_after_ms = uuid.UUID(note["user_id"]), int(note["valid_after_ms"])
            except (KeyError, TypeError, ValueError):
                log.warning("a token revocation without a user or an instant was skipped: %r", note)
                continue
            with self._lock:
                held = list(self._held.get(user_id, {}).items())
            for connection, principal in held:
                if principal.issued_at_ms < valid_after_ms:
                    connection.close_with(CLOSE_SIGNED_OUT, SIGNED_OUT)
