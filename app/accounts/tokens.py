"""Access tokens: JSON Web Tokens (RFC 7519) that a gateway in front of the service can verify too.

A token is signed with HS256 by default, its key derived from SECRET_KEY (HKDF, so SECRET_KEY itself
never keys an HMAC and can sign other things), or with ES256 (`JWT_ALGORITHM`), whose public key is
served as a JWKS at /.well-known/jwks.json: a gateway holding it can check tokens but not make them.
ES256 rather than EdDSA: HAProxy 2.6's `jwt_verify` (and many gateways) verify ES256, not EdDSA.

Claims: `sub` (the user's id), `kind` (`user` or `guest`), `iat`, `exp`, `jti`, `iss` and `aud`
(JWT_ISSUER, JWT_AUDIENCE). The `jti` is a UUIDv7 (app/core/ids.py), so it carries the millisecond the
token was issued: a logout refuses every token of the user whose `jti` is older than it
(`users.tokens_valid_after`, cached in Redis: app/accounts/users.py). A gateway cannot know of a
logout; the service checks it on every request.

Tokens of the format before JWTs (itsdangerous, signed with SECRET_KEY) are accepted until they
expire, TOKEN_TTL_S after their issue, so nobody is signed out by the upgrade; none is issued any
more, and `_read_before_jwt` goes in the release after this one.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from jwt.algorithms import HMACAlgorithm

from app.core.config import Config, ConfigError
from app.core.ids import new_id

ALGORITHMS = ("HS256", "ES256")
KINDS = ("user", "guest")
# Ours are about 400 bytes; a longer one is refused before it is decoded (at the edge too).
MAX_TOKEN_BYTES = 1024
_REQUIRED_CLAIMS = ["sub", "kind", "iat", "exp", "jti", "iss", "aud"]
# Tokens whose signature and claims a process has verified, kept with their expiry: a player's next
# request skips the decode (a logout is checked apart on every request, never cached here). 16,384
# players' tokens are about 14 MB a process (~850 bytes each, measured); beyond it the least recently
# used is verified again.
VERIFIED_TOKENS_KEPT = 16_384
# The wording of each refusal, the same in the service and at the edge (scripts/haproxy.cfg).
TOKEN_EXPIRED = "token expired"
TOKEN_INVALID = "token invalid"


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    is_guest: bool
    issued_at_ms: int = 0
    via_api_key: bool = False  # a game server writing scores to its owner's boards

    @property
    def kind(self) -> str:
        return "guest" if self.is_guest else "user"


class InvalidToken(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _derive(secret_key: str, purpose: str, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None,
                info=f"livequiz access tokens {purpose}".encode()).derive(secret_key.encode())


@dataclass(frozen=True, eq=False)
class TokenKeys:
    """The keys of one configuration: `signing` makes tokens, `verifying` checks them. Compared and
    hashed by identity (an ES256 key has no hash): one object per configuration (`token_keys`), the key
    of the tokens it verified (`_verified_jwt`)."""

    algorithm: str
    signing: Any  # HS256: the shared secret (bytes); ES256: the private key
    verifying: Any
    issuer: str
    audience: str

    @functools.cached_property
    def key_id(self) -> str | None:
        """ES256: the public key's RFC 7638 thumbprint, named in each token's header and in the JWKS."""
        if self.algorithm != "ES256":
            return None
        members = {k: v for k, v in self.public_jwk().items() if k in ("crv", "kty", "x", "y")}
        canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode()
        return _b64url(hashlib.sha256(canonical).digest())

    def public_jwk(self) -> dict[str, str]:
        numbers = self.verifying.public_numbers()
        return {"kty": "EC", "crv": "P-256", "x": _b64url(numbers.x.to_bytes(32, "big")),
                "y": _b64url(numbers.y.to_bytes(32, "big"))}

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public keys as a JWK Set; none with HS256 (its key is a shared secret)."""
        if self.algorithm != "ES256":
            return {"keys": []}
        return {"keys": [{**self.public_jwk(), "use": "sig", "alg": "ES256", "kid": self.key_id}]}

    def public_pem(self) -> bytes:
        return self.verifying.public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)


def _es256_key(config: Config) -> ec.EllipticCurvePrivateKey:
    if not config.jwt_private_key_file:
        # A scalar in [1, n-1] from 384 bits: the bias of the reduction is below 2^-128.
        order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
        scalar = int.from_bytes(_derive(config.secret_key, "ES256", 48), "big") % (order - 1) + 1
        return ec.derive_private_key(scalar, ec.SECP256R1())
    try:
        with open(config.jwt_private_key_file, "rb") as pem:
            key = serialization.load_pem_private_key(pem.read(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"JWT_PRIVATE_KEY_FILE={config.jwt_private_key_file!r} is not valid: {exc}"
                          ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ConfigError(f"JWT_PRIVATE_KEY_FILE={config.jwt_private_key_file!r} is not valid: "
                          "ES256 needs a P-256 key")
    return key


def shared_secret(secret_key: str) -> str:
    """The HS256 key: 256 bits derived from SECRET_KEY, as text (base64url), so it can be written into
    a gateway's configuration as it is; its ASCII bytes are the HMAC key."""
    return _b64url(_derive(secret_key, "HS256", 32))


class _HmacKeyCheckedOnce(HMACAlgorithm):
    """HS256 as PyJWT has it, but the checks of its key (not empty, not a PEM, SSH, DER or JWK text, which
    would be an asymmetric key used as an HMAC secret) run once per key and process: PyJWT runs them on
    every sign and verify, where two attempts to parse the key as DER were about a quarter of a new
    token's check. They depend on the key alone, so a key refused once is refused every time (a refusal
    is not kept)."""

    def __init__(self) -> None:
        super().__init__(HMACAlgorithm.SHA256)

    def prepare_key(self, key: str | bytes) -> bytes:
        return _checked_hmac_key(key)


@functools.lru_cache(maxsize=8)
def _checked_hmac_key(key: str | bytes) -> bytes:
    return HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(key)


# PyJWT's registry of algorithms (its public hook for them), used by jwt.encode and jwt.decode.
jwt.unregister_algorithm("HS256")
jwt.register_algorithm("HS256", _HmacKeyCheckedOnce())


@functools.lru_cache(maxsize=8)
def token_keys(config: Config) -> TokenKeys:
    """The keys of `config`, built once per process (an ES256 key takes a moment to derive)."""
    if config.jwt_algorithm == "ES256":
        private = _es256_key(config)
        return TokenKeys("ES256", private, private.public_key(), config.jwt_issuer, config.jwt_audience)
    secret = shared_secret(config.secret_key).encode()
    return TokenKeys("HS256", secret, secret, config.jwt_issuer, config.jwt_audience)


def check_token_keys(config: Config) -> None:
    """At a web process's start: an unreadable or unfit JWT_PRIVATE_KEY_FILE ends it with one line."""
    token_keys(config)


def issue_token(config: Config, user_id: uuid.UUID, is_guest: bool) -> str:
    keys = token_keys(config)
    now = int(time.time())
    claims = {"sub": str(user_id), "kind": "guest" if is_guest else "user", "iat": now,
              "exp": now + config.token_ttl_s, "jti": str(new_id()), "iss": keys.issuer, "aud": keys.audience}
    headers = {"kid": keys.key_id} if keys.key_id else None
    return jwt.encode(claims, keys.signing, algorithm=keys.algorithm, headers=headers)


def read_token(config: Config, token: str) -> Principal:
    """The holder of a token this service issued and that has not expired (a logout is checked apart:
    app/accounts/users.py). Refusals say `token expired` or `token invalid`, nothing more.

    A JWT verified once is remembered with its expiry (`VERIFIED_TOKENS_KEPT` per process): the same
    token again costs a lookup and a clock read, not a signature check."""
    if len(token) > MAX_TOKEN_BYTES:
        raise InvalidToken(TOKEN_INVALID)
    try:
        principal, expires_at = _verified_jwt(token_keys(config), token)
    except _NotAJwt:
        return _read_before_jwt(config, token)
    if time.time() >= expires_at:  # as PyJWT decides it: valid while now < exp
        raise InvalidToken(TOKEN_EXPIRED)
    return principal


class _NotAJwt(Exception):
    """A token of the format before JWTs."""


@functools.lru_cache(maxsize=VERIFIED_TOKENS_KEPT)
def _verified_jwt(keys: TokenKeys, token: str) -> tuple[Principal, float]:
    """A JWT's holder and expiry, once its signature and claims check out under `keys` (a refusal is
    not kept)."""
    if not _names_an_algorithm(token):
        raise _NotAJwt
    try:
        # One algorithm, the configured one: `none`, or HS256 keyed with the ES256 public key, is refused.
        # `iat` is only required: a token issued by a web whose clock runs a little ahead is still ours.
        claims = jwt.decode(token, keys.verifying, algorithms=[keys.algorithm], issuer=keys.issuer,
                            audience=keys.audience,
                            options={"require": _REQUIRED_CLAIMS, "verify_iat": False})
    except jwt.ExpiredSignatureError:
        raise InvalidToken(TOKEN_EXPIRED) from None
    except jwt.PyJWTError:
        raise InvalidToken(TOKEN_INVALID) from None
    try:
        if claims["kind"] not in KINDS:
            raise ValueError("kind")
        token_id = uuid.UUID(claims["jti"])
        if token_id.version != 7:
            raise ValueError("jti")
        return Principal(user_id=uuid.UUID(claims["sub"]), is_guest=claims["kind"] == "guest",
                         issued_at_ms=token_id.int >> 80), float(claims["exp"])
    except (TypeError, ValueError, AttributeError):
        raise InvalidToken(TOKEN_INVALID) from None


def _names_an_algorithm(token: str) -> bool:
    """Whether the token's first part is a JOSE header (`alg`): a JWT, not a token from before them (the
    first part of those is their payload). Read once here; PyJWT reads it again, checked, in `decode`."""
    first = token.partition(".")[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(first + "=" * (-len(first) % 4)))
    except (ValueError, TypeError):  # binascii.Error and JSONDecodeError are ValueErrors
        return False
    return isinstance(header, dict) and "alg" in header


# The access tokens issued before JWTs: read until the last of them has expired.
_SALT_BEFORE_JWT = "livequiz.access-token"


def _read_before_jwt(config: Config, token: str) -> Principal:
    try:
        data = URLSafeTimedSerializer(config.secret_key, salt=_SALT_BEFORE_JWT).loads(
            token, max_age=config.token_ttl_s)
        return Principal(user_id=uuid.UUID(data["u"]), is_guest=bool(data["g"]),
                         issued_at_ms=int(data.get("i", 0)))
    except SignatureExpired:
        raise InvalidToken(TOKEN_EXPIRED) from None
    except (BadSignature, KeyError, TypeError, ValueError, AttributeError):
        raise InvalidToken(TOKEN_INVALID) from None
