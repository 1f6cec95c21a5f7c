"""Signed, expiring bearer tokens (itsdangerous, which Flask ships), revocable by a logout.

A token carries its user and the millisecond it was issued; a logout records the instant before
which every token of the user is refused (`users.tokens_valid_after`, cached in Redis: see
app/services/accounts.py).
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

_SALT = "livequiz.access-token"


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    is_guest: bool
    issued_at_ms: int = 0
    via_api_key: bool = False  # a game server writing scores to its owner's boards


class InvalidToken(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def issue_token(secret_key: str, user_id: uuid.UUID, is_guest: bool) -> str:
    return URLSafeTimedSerializer(secret_key, salt=_SALT).dumps(
        {"u": str(user_id), "g": is_guest, "i": time.time_ns() // 1_000_000})


def read_token(secret_key: str, token: str, max_age_s: int) -> Principal:
    try:
        data = URLSafeTimedSerializer(secret_key, salt=_SALT).loads(token, max_age=max_age_s)
        return Principal(user_id=uuid.UUID(data["u"]), is_guest=bool(data["g"]), issued_at_ms=int(data.get("i", 0)))
    except SignatureExpired:
        raise InvalidToken("token expired") from None
    except (BadSignature, KeyError, TypeError, ValueError, AttributeError):
        raise InvalidToken("token invalid") from None
