"""Forged and broken access tokens, each with the refusal the service and the edge give it: the attacks
of tests/integration/test_access_tokens.py (the service) and tests/cluster/test_edge.py (HAProxy)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from app.accounts.tokens import MAX_TOKEN_BYTES, TOKEN_EXPIRED, TOKEN_INVALID, token_keys
from app.core.config import Config
from app.core.ids import new_id

NO_TOKEN = "send Authorization: Bearer <access_token>"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


def claims_of(config: Config, user_id: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": user_id, "kind": "user", "iat": now, "exp": now + 600, "jti": str(new_id()),
              "iss": config.jwt_issuer, "aud": config.jwt_audience}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def signed(config: Config, claims: dict[str, Any]) -> str:
    """Signed with the service's own key: only what a test changed in the claims is wrong."""
    keys = token_keys(config)
    return jwt.encode(claims, keys.signing, algorithm=keys.algorithm,
                      headers={"kid": keys.key_id} if keys.key_id else None)


def attacks(config: Config, user_id: str) -> dict[str, tuple[str, str]]:
    """name -> (bearer token, the refusal's message) for a registered user's id."""
    keys = token_keys(config)
    claims = claims_of(config, user_id)
    body = _unsigned({"alg": keys.algorithm, "typ": "JWT"}, claims)
    found = {
        "alg_none": (_unsigned({"alg": "none", "typ": "JWT"}, claims) + ".", TOKEN_INVALID),
        "expired": (signed(config, claims_of(config, user_id, iat=int(time.time()) - 7200,
                                             exp=int(time.time()) - 60)), TOKEN_EXPIRED),
        "oversized": (signed(config, claims_of(config, user_id, pad="x" * MAX_TOKEN_BYTES)), TOKEN_INVALID),
        "wrong_signature": (body + "." + _b64(b"\x01" * (64 if keys.algorithm == "ES256" else 32)),
                            TOKEN_INVALID),
        "wrong_kind": (signed(config, claims_of(config, user_id, kind="admin")), TOKEN_INVALID),
        "no_kind": (signed(config, claims_of(config, user_id, kind=None)), TOKEN_INVALID),
        "other_audience": (signed(config, claims_of(config, user_id, aud="another-api")), TOKEN_INVALID),
        "other_issuer": (signed(config, claims_of(config, user_id, iss="someone-else")), TOKEN_INVALID),
        "malformed": ("not-a.jwt", TOKEN_INVALID),
    }
    if keys.algorithm == "ES256":
        # Algorithm confusion: HS256 keyed with the public key everyone can fetch from the JWKS.
        confused = _unsigned({"alg": "HS256", "typ": "JWT"}, claims)
        mac = hmac.new(keys.public_pem(), confused.encode(), hashlib.sha256).digest()
        found["alg_confusion"] = (f"{confused}.{_b64(mac)}", TOKEN_INVALID)
        other = ec.generate_private_key(ec.SECP256R1())
        found["other_key"] = (jwt.encode(claims, other, algorithm="ES256"), TOKEN_INVALID)
    else:
        # SECRET_KEY itself is not the HMAC key: a token keyed with it is forged.
        found["raw_secret_key"] = (jwt.encode(claims, config.secret_key, algorithm="HS256"), TOKEN_INVALID)
    return found
