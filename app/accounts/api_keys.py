"""API keys: how game servers write scores to their owner's boards.

A key is shown once, at creation: `lbk_<key id>_<secret>`. Only a SHA-256 of the secret is kept (the
secret is 32 random bytes, so a fast hash is safe), and a key authenticates by id and constant-time
comparison. A key's check (its owner and hash) is kept in Redis for every web process, so a busy game
server does not cost a query per score; a revocation overwrites it with a mark that outlives any check
written before it, so the key is refused by every process from the moment the revocation answers.
Without Redis, keys are checked against PostgreSQL, the truth.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from typing import Any

import redis as redis_lib
from sqlalchemy import Engine, text

from app.core import redis_keys
from app.core.errors import NotFound, Unavailable

PREFIX = "lbk_"
# How long Redis keeps a live key's check, and the mark of a revoked one (much longer: a check read
# from PostgreSQL just before the revocation may only be written after it, and must not win).
_CHECK_TTL_S = 300
_REVOKED_TTL_S = 24 * 3600
_REVOKED = b"revoked"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(engine: Engine, owner_id: uuid.UUID, name: str) -> dict[str, Any]:
    key_id, secret = uuid.uuid4(), secrets.token_urlsafe(32)
    with engine.begin() as connection:
        created_at = connection.execute(text(
            "INSERT INTO api_keys (id, owner_id, name, secret_hash) VALUES (:id, :owner, :name, :hash) "
            "RETURNING created_at"),
            {"id": key_id, "owner": owner_id, "name": name, "hash": _hash(secret)}).scalar()
    return {"id": str(key_id), "name": name, "key": f"{PREFIX}{key_id.hex}_{secret}",
            "created_at": created_at.isoformat()}


def list_keys(engine: Engine, owner_id: uuid.UUID) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT id, name, created_at FROM api_keys WHERE owner_id = :owner AND revoked_at IS NULL "
            "ORDER BY created_at"), {"owner": owner_id}).all()
    return [{"id": str(r.id), "name": r.name, "created_at": r.created_at.isoformat()} for r in rows]


def _check_key(key_id: uuid.UUID) -> str:
    return redis_keys.key(f"api-key:{key_id.hex}")


def revoke_key(engine: Engine, redis, owner_id: uuid.UUID, key_id: uuid.UUID) -> None:
    """Revoke one of the owner's keys; NotFound when it is not theirs or was revoked already (its mark
    is written again then, so a revocation answered 503 takes effect when it is sent again)."""
    with engine.begin() as connection:
        row = connection.execute(text(
            "WITH k AS (SELECT id, revoked_at FROM api_keys WHERE id = :id AND owner_id = :owner FOR UPDATE) "
            "UPDATE api_keys SET revoked_at = coalesce(k.revoked_at, clock_timestamp()) FROM k "
            "WHERE api_keys.id = k.id RETURNING k.revoked_at IS NULL AS was_live"),
            {"id": key_id, "owner": owner_id}).one_or_none()
    if row is None:
        raise NotFound("not_found", "no such API key")
    try:
        redis.set(_check_key(key_id), _REVOKED, ex=_REVOKED_TTL_S)
    except redis_lib.RedisError:
        # PostgreSQL holds the revocation, but the check kept in Redis may admit the key until it expires.
        raise Unavailable("unavailable", "the key is revoked but not yet refused everywhere; "
                          "send the revocation again") from None
    if not row.was_live:
        raise NotFound("not_found", "no such API key")


def owner_of(engine: Engine, redis, key: str) -> uuid.UUID | None:
    """The owner a presented key acts for; None when it is not a live key."""
    try:
        key_id_hex, secret = key[len(PREFIX):].split("_", 1)
        key_id = uuid.UUID(hex=key_id_hex)
    except ValueError:
        return None
    try:
        kept = redis.get(_check_key(key_id))
    except redis_lib.RedisError:
        kept, redis = None, None
    if kept == _REVOKED:
        return None
    if kept is not None:
        secret_hash, _, owner = kept.decode().partition(" ")
        owner_id = uuid.UUID(owner)
    else:
        with engine.connect() as connection:
            row = connection.execute(text(
                "SELECT secret_hash, owner_id, revoked_at IS NOT NULL AS revoked "
                "FROM api_keys WHERE id = :id"),
                {"id": key_id}).one_or_none()
        if row is None:
            return None
        secret_hash, owner_id = row.secret_hash, row.owner_id
        if redis is not None:
            check = _REVOKED if row.revoked else f"{secret_hash} {owner_id}"
            try:  # never over a revocation's mark: only where nothing is kept
                redis.set(_check_key(key_id), check, ex=_REVOKED_TTL_S if row.revoked else _CHECK_TTL_S,
                          nx=True)
            except redis_lib.RedisError:
                pass
        if row.revoked:
            return None
    return owner_id if hmac.compare_digest(secret_hash, _hash(secret)) else None
