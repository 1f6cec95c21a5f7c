"""Signed, expiring bearer tokens (itsdangerous, which Flask ships)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

_SALT = "livequiz.access-token"


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    is_guest: bool


class InvalidToken(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def issue_token(secret_key: str, user_id: uuid.UUID, is_guest: bool) -> str:
    return URLSafeTimedSerializer(secret_key, salt=_SALT).dumps({"u": str(user_id), "g": is_guest})


def read_token(secret_key: str, token: str, max_age_s: int) -> Principal:
    try:
        data = URLSafeTimedSerializer(secret_key, salt=_SALT).loads(token, max_age=max_age_s)
        return Principal(user_id=uuid.UUID(data["u"]), is_guest=bool(data["g"]))
    except SignatureExpired:
        raise InvalidToken("token expired") from None
    except (BadSignature, KeyError, TypeError, ValueError):
        raise InvalidToken("token invalid") from None
