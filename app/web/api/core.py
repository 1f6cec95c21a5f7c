"""What every API blueprint shares: JSON errors, body and query validation, auth, route docs."""
from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, current_app, g, request
from pydantic import BaseModel, ValidationError

from app.accounts import api_keys as keys
from app.accounts import users
from app.accounts.tokens import InvalidToken, Principal, read_token
from app.core.ids import parse_id
from app.core.validation import describe_validation
from app.web.extensions import engine, rate_limits, redis_client
from app.web.ratelimits import Limit, client_address, limit

M = TypeVar("M", bound=BaseModel)


class ApiError(Exception):
    """An expected failure, answered as `{"error": {"code", "message"}}` with its status."""

    def __init__(self, status: int, code: str, message: str, **extra: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def parse_body(model: type[M]) -> M:
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # nested deeper than any real body
        data = None
    if data is None:
        raise ApiError(400, "invalid_json", "the body is not valid JSON")
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_body", "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, "invalid_body", describe_validation(exc)) from None


def parse_optional_body(model: type[M]) -> M:
    """Like parse_body, but an empty body means all defaults."""
    if not request.get_data(cache=True):
        return model()
    return parse_body(model)


def parse_query(model: type[M]) -> M:
    repeated = sorted(name for name, values in request.args.lists() if len(values) > 1)
    if repeated:
        raise ApiError(400, "invalid_query", f"{repeated[0]}: give the parameter once")
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise ApiError(400, "invalid_query", describe_validation(exc)) from None


def parse_uuid(value: str, what: str = "id") -> uuid.UUID:
    """The id a path or body names (as the API writes ids: 8-4-4-4-12); 404 for anything else."""
    try:
        return parse_id(value)
    except ValueError:
        raise ApiError(404, "not_found", f"no such {what}") from None


CREDENTIAL_NOT_ALLOWED = "credential_not_allowed"


def credential_not_allowed() -> ApiError:
    """The one answer, over REST and GraphQL alike, to a valid credential of a kind that may not do
    what was asked: an API key anywhere but a score write (403: the key is known, its kind refused)."""
    return ApiError(403, CREDENTIAL_NOT_ALLOWED,
                    "API keys only write scores; this needs a user's access token")


def bearer_token(header: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header; 401 without one."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <access_token>")
    return token.strip()


def principal_from_token(token: str, *, api_keys: bool = False) -> Principal:
    """Who a bearer token is: an access token's user, or (API keys of the leaderboard service) the
    key's owner. A key is accepted only with `api_keys` (score writes, for its owner); elsewhere a
    valid key gets `credential_not_allowed`, an unknown or revoked one 401."""
    if token.startswith(keys.PREFIX):
        owner = keys.owner_of(engine(), redis_client(), token)
        if owner is None:
            raise ApiError(401, "unauthorized", "unknown or revoked API key")
        if not api_keys:
            raise credential_not_allowed()
        return Principal(user_id=owner, is_guest=False, via_api_key=True)
    return principal_of(token)


def principal_from_header(*, api_keys: bool = False) -> Principal:
    """The caller of the request (see principal_from_token)."""
    return principal_from_token(bearer_token(request.headers.get("Authorization")), api_keys=api_keys)


def principal_of(token: str) -> Principal:
    """The signed-in user of an access token that is neither expired nor revoked by a logout."""
    return not_revoked(signed_principal(token))


def signed_principal(token: str) -> Principal:
    """The holder of an access token that is ours and not expired; whether a logout revoked it is
    `not_revoked`'s to say."""
    try:
        return read_token(current_app.config["LIVEQUIZ"], token)
    except InvalidToken as exc:
        raise ApiError(401, "unauthorized", exc.reason) from None


def not_revoked(principal: Principal, cached: Any = users.UNREAD) -> Principal:
    """`principal`, unless a logout revoked its token (401); `cached`: its revocation instant as read
    from Redis already (users.is_revoked)."""
    if users.is_revoked(engine(), redis_client(), principal, cached=cached):
        raise ApiError(401, "unauthorized", "token revoked (signed out)")
    return principal


def hit_public_read_budgets() -> None:
    """What a read open to anyone costs its address, as `endpoint` counts a public GET: for the
    routes outside the API (a picture, a QR code)."""
    rate_limits().hit(limit("api_per_address"), limit("public_reads_per_address"))


def read_raw_body(max_bytes: int) -> bytes:
    """The request's body, of at most `max_bytes` (this route's own limit instead of MAX_BODY_BYTES):
    a larger one is refused with 413 without reading more than `max_bytes` + 1 bytes of it (none
    when its Content-Length says so)."""
    too_large = ApiError(413, "body_too_large", f"the body may be at most {max_bytes} bytes")
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large
    # A body without a length (chunked) is cut at the request's limit: one byte more tells it is over.
    request.max_content_length = max_bytes + 1
    data = request.get_data(cache=False)
    if len(data) > max_bytes:
        raise too_large
    return data


def current_principal() -> Principal:
    return g.principal


def require_registered(to: str, principal: Principal | None = None) -> None:
    """Guests (nickname only) and API keys cannot do what a registered account does."""
    principal = principal or current_principal()
    if principal.is_guest or principal.via_api_key:
        raise ApiError(403, "registered_users_only", f"register an account to {to}")


@dataclass
class RouteDoc:
    rule: str
    methods: list[str]
    summary: str
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    auth: bool
    responses: dict[int, str] = field(default_factory=dict)
    limits: tuple[str, ...] = ()
    api_keys: bool = False
    body_required: bool = True
    raw_body: tuple[str, ...] = ()

    def admit(self, address: str, token: Callable[[], str]) -> Principal | None:
        """What a call of this route is checked for before it runs (and a GraphQL field that is its
        twin, app/web/graphql/guards.py): the address budgets first, so a flood of made-up tokens or keys
        is refused before it costs a lookup; then the credential `token()` gives, if the route needs
        one; then the user's budgets. The caller, or None for a route open to anyone."""
        budgets = rate_limits()
        first = [Limit(rule, address) for rule in self.limits if rule.endswith("_per_address")]
        credential, principal, refusal = "", None, None
        if self.auth:
            try:
                credential = token()
                if not credential.startswith(keys.PREFIX):  # an access token (a key is looked up later)
                    principal = signed_principal(credential)  # its signature and expiry, cached
            except ApiError as exc:
                refusal = exc  # answered once the address budgets are spent, as they say
        if principal is None:
            budgets.hit(*first)
            if refusal is not None:
                raise refusal
            if not self.auth:
                return None
            principal = principal_from_token(credential, api_keys=self.api_keys)
            budgets.hit(*self._user_limits(principal))
            return principal
        # The address budgets, the token's revocation and the user's budgets in one round trip, in that order.
        then = self._user_limits(principal)
        admitted = budgets.admit(first, users.revocation_key(principal.user_id), principal.issued_at_ms, then)
        if admitted.stopped:
            not_revoked(principal, cached=admitted.instant)
            budgets.hit(*then)
        return principal

    def _user_limits(self, principal: Principal) -> list[Limit]:
        user = str(principal.user_id)
        return [Limit(rule, user) for rule in self.limits if not rule.endswith("_per_address")]


ROUTE_DOCS: list[RouteDoc] = []


def route_doc(method: str, rule: str) -> RouteDoc:
    """The registration of the route `method rule` (e.g. `POST /api/v1/scores`); its blueprint's
    module must be imported."""
    return next(doc for doc in ROUTE_DOCS if doc.rule == rule and method in doc.methods)


def endpoint(bp: Blueprint, rule: str, *, methods: list[str], summary: str,
             body: type[BaseModel] | None = None, query: type[BaseModel] | None = None,
             auth: bool = True, responses: dict[int, str] | None = None, limits: tuple[str, ...] = (),
             api_keys: bool = False, body_required: bool = True,
             raw_body: tuple[str, ...] = ()) -> Callable:
    """Register a route on `bp`, with its bearer check and rate limits, and describe it for the
    OpenAPI document. Every route counts against `api_per_address`, a signed-in one against
    `api_per_user`, a read open to anyone against `public_reads_per_address`, plus `limits`.
    `api_keys`: the leaderboard service's API keys may call it (score writes, which game servers
    send far more often than people click: they count against the `score_writes_*` budgets instead).
    `raw_body`: the body is bytes of one of these media types, not JSON (`body` describes JSON ones)."""
    full_rule = (bp.url_prefix or "") + rule
    if api_keys:
        rules = ("score_writes_per_address", "score_writes_per_user") + tuple(limits)
    else:
        rules = ("api_per_address",) + (("api_per_user",) if auth else ()) + (
            ("public_reads_per_address",) if not auth and methods == ["GET"] else ()) + tuple(limits)
    doc = RouteDoc(full_rule, methods, summary, body, query, auth, responses or {}, rules, api_keys,
                   body_required, tuple(raw_body))
    ROUTE_DOCS.append(doc)

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            principal = doc.admit(client_address(),
                                  lambda: bearer_token(request.headers.get("Authorization")))
            if principal is not None:
                g.principal = principal
            return view(*args, **kwargs)

        bp.add_url_rule(rule, view.__name__, guarded, methods=methods)
        return guarded

    return decorate
