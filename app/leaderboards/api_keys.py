"""API keys: how game servers write scores to their owner's boards.

A key is shown once, at creation: `lbk_<key id>_<secret>`. Only a SHA-256 of the secret is kept (the
secret is 32 random bytes, so a fast hash is safe), and a key authenticates by id and constant-time
comparison. Checks are remembered by the process for a short while, so a busy game server does not
cost a query per score; a revoked key stops working within that while.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import uuid
from typing import Any

from sqlalchemy import Engine, text

from app.services.errors import NotFound

PREFIX = "lbk_"
_REMEMBER_S = 30.0


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(engine: Engine, owner_id: uuid.UUID, name: str) -> dict[str, Any]:
    key_id, secret = uuid.uuid4(), secrets.token_urlsafe(32)
    with engine.begin() as connection:
        created_at = connection.execute(text(
            "INSERT INTO api_keys (id, owner_id, name, secret_hash) VALUES (:id, :owner, :name, :hash) "
            "RETURNING created_at"), {"id": key_id, "owner": owner_id, "name": name, "hash": _hash(secret)}).scalar()
    return {"id": str(key_id), "name": name, "key": f"{PREFIX}{key_id.hex}_{secret}",
            "created_at": created_at.isoformat()}


def list_keys(engine: Engine, owner_id: uuid.UUID) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT id, name, created_at FROM api_keys WHERE owner_id = :owner AND revoked_at IS NULL "
            "ORDER BY created_at"), {"owner": owner_id}).all()
    return [{"id": str(r.id), "name": r.name, "created_at": r.created_at.isoformat()} for r in rows]


def revoke_key(engine: Engine, owner_id: uuid.UUID, key_id: uuid.UUID) -> None:
    with engine.begin() as connection:
        revoked = connection.execute(text(
            "UPDATE api_keys SET revoked_at = clock_timestamp() WHERE id = :id AND owner_id = :owner "
            "AND revoked_at IS NULL"), {"id": key_id, "owner": owner_id}).rowcount
    if not revoked:
        raise NotFound("not_found", "no such API key")
    KEY_CHECKS.forget(key_id)


class KeyChecks:
    """Which owner a presented key belongs to (None when it is not a live key), remembered briefly."""

    def __init__(self) -> None:
        self._known: dict[uuid.UUID, tuple[str, uuid.UUID, float]] = {}
        self._lock = threading.Lock()

    def owner_of(self, engine: Engine, key: str) -> uuid.UUID | None:
        try:
            key_id_hex, secret = key[len(PREFIX):].split("_", 1)
            key_id = uuid.UUID(hex=key_id_hex)
        except ValueError:
            return None
        with self._lock:
            known = self._known.get(key_id)
        if known is None or known[2] < time.monotonic():
            with engine.connect() as connection:
                row = connection.execute(text(
                    "SELECT secret_hash, owner_id FROM api_keys WHERE id = :id AND revoked_at IS NULL"),
                    {"id": key_id}).one_or_none()
            if row is None:
                return None
            known = (row.secret_hash, row.owner_id, time.monotonic() + _REMEMBER_S)
            with self._lock:
                self._known[key_id] = known
        return known[1] if hmac.compare_digest(known[0], _hash(secret)) else None

    def forget(self, key_id: uuid.UUID) -> None:
        with self._lock:
            self._known.pop(key_id, None)


KEY_CHECKS = KeyChecks()
