"""Registered hosts and players, nickname-only guests, and the revocation of their access tokens.

Passwords are hashed with scrypt (werkzeug) through the process's `PasswordHashing` (hashing.py): a
couple at a time, in threads of their own that yield to everything else, the logins waiting for their
turn bounded and shared between client addresses, so a burst of logins queues behind itself while
sockets and answers go on.

A logout revokes every access token the user holds: `users.tokens_valid_after` is the truth, and
each request compares its token's issue time with a copy cached in Redis for a few minutes (read
from PostgreSQL on a miss, or when Redis is away). The logout is also appended to the stream
`token-revocations`, which every web process reads, so the sockets opened with those tokens are
closed wherever they are (app/web/rooms/signed_in.py).
"""
from __future__ import annotations

import uuid

import redis as redis_lib
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from app.accounts.hashing import PasswordHashing
from app.accounts.models import User
from app.accounts.tokens import Principal
from app.core import redis_keys
from app.core.db import read_connection
from app.core.errors import Conflict, Unauthorized, Unavailable
from app.core.ids import new_id

# Checked when the user does not exist, so a login takes as long either way.
_DUMMY_HASH = generate_password_hash("not-a-real-password")
# How long a request may trust the cached revocation instant of a user.
_REVOCATION_CACHE_S = 300
# Logouts the stream keeps: a web process that starts reads them all (its sockets are new; the ticket
# or token check refuses what they revoked), one that lost Redis for a while catches up from them.
_REVOCATIONS_KEPT = 10_000


def register(db: Session, hashing: PasswordHashing, client: str, username: str, password: str) -> User:
    """A new account; its password's hash is charged to the client address `client`."""
    user = User(id=new_id(), username=username, nickname=username[:32],
                password_hash=hashing.make(password, client), is_guest=False)
    try:
        with db.begin():
            db.add(user)
    except IntegrityError:
        raise Conflict("username_taken", "that username is taken") from None
    return user


def authenticate(db: Session, hashing: PasswordHashing, client: str, username: str, password: str) -> User:
    """The user whose password this is; the check is charged to the client address `client`."""
    with db.begin():
        user = db.scalar(select(User).where(User.username == username, User.is_guest.is_(False)))
    if user is None or user.password_hash is None:
        hashing.matches(_DUMMY_HASH, password, client)
        raise Unauthorized("invalid_credentials", "wrong username or password")
    if not hashing.matches(user.password_hash, password, client):
        raise Unauthorized("invalid_credentials", "wrong username or password")
    return user


def create_guest(db: Session, nickname: str) -> User:
    user = User(id=new_id(), username=None, nickname=nickname, password_hash=None, is_guest=True)
    with db.begin():
        db.add(user)
    return user


def revocation_key(user_id: uuid.UUID) -> str:
    """The Redis key caching a user's revocation instant (ms): a request may read it in a round trip it
    makes anyway (app/web/ratelimits.py `admit`) and hand it to `is_revoked`."""
    return redis_keys.key(f"tokens-valid-after:{user_id}")


def revocations_stream() -> str:
    """The stream of logouts: `user_id`, and `valid_after_ms`, the instant before which its tokens are
    refused."""
    return redis_keys.key("token-revocations")


def revoke_tokens(engine: Engine, redis, user_id: uuid.UUID) -> None:
    """Refuse every access token of the user issued until now (a logout), and close its sockets."""
    with engine.begin() as connection:
        valid_after_ms = connection.execute(text(
            "UPDATE users SET tokens_valid_after = clock_timestamp() WHERE id = :id "
            "RETURNING (extract(epoch FROM tokens_valid_after) * 1000)::bigint"), {"id": user_id}).scalar()
    try:
        redis.set(revocation_key(user_id), valid_after_ms or 0, ex=_REVOCATION_CACHE_S)
        redis.xadd(revocations_stream(), {"user_id": str(user_id), "valid_after_ms": valid_after_ms or 0},
                   maxlen=_REVOCATIONS_KEPT, approximate=True)
    except redis_lib.RedisError:
        # PostgreSQL holds the revocation, but cached copies may still admit old tokens for a while.
        raise Unavailable("unavailable", "the logout is recorded but not yet in force everywhere; "
                          "send it again") from None


# `is_revoked`'s `cached` when the caller has not read the cache.
UNREAD = object()


def is_revoked(engine: Engine, redis, principal: Principal, cached=UNREAD) -> bool:
    """True when a logout after this token was issued revoked it. `cached`: the value at
    `revocation_key` already read from Redis (None when absent); unread, it is read here."""
    key = revocation_key(principal.user_id)
    if cached is UNREAD:
        try:
            cached = redis.get(key)
        except redis_lib.RedisError:
            cached = None
            redis = None
    if cached is None:
        with read_connection(engine) as connection:
            valid_after_ms = connection.execute(text(
                "SELECT coalesce((extract(epoch FROM tokens_valid_after) * 1000)::bigint, 0) FROM users "
                "WHERE id = :id"), {"id": principal.user_id}).scalar()
        if valid_after_ms is None:
            return True  # the user is gone
        if redis is not None:
            try:
                redis.set(key, valid_after_ms, ex=_REVOCATION_CACHE_S, nx=True)
            except redis_lib.RedisError:
                pass
    else:
        valid_after_ms = int(cached)
    return principal.issued_at_ms < int(valid_after_ms)
