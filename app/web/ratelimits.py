"""Rate limits shared by every web process, counted in Redis.

The `limits` library keeps a sliding-window counter per rule and identifier (one Lua call per hit),
so every gunicorn worker and every web server behind a balancer counts against the same budget.
Each rule is a configuration variable (app/core/config.py, `RATE_*`); its defaults leave room for a
real classroom: 2,000 players behind one school NAT address create 2,000 guests, look the PIN up and
join within a minute (about 6,000 requests from one address), far below the per-address ceilings.
What a guesser needs is different: join-code lookups that miss are counted on their own, with a
budget per token and per address that no typing player reaches.

A signed-in request is admitted in one round trip (`admit`, lua/rate_limits_admit.lua): its address's
budgets, the user's cached revocation instant (app/accounts/users.py), then the user's budgets, in the
order and with the counts of the library's own calls one at a time (those run on a Redis Cluster,
whose keys of one request lie in different slots).

A refused request gets 429 `too_many_requests` with Retry-After. When Redis cannot be reached the
limits fail open, so a Redis restart never turns into errors; each such pass is counted in
`rate_limit_unavailable_total`.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flask import g, request
from limits import RateLimitItem, parse
from limits.storage import RedisStorage
from limits.strategies import SlidingWindowCounterRateLimiter

from app.accounts.users import UNREAD
from app.core import redis_keys
from app.core.config import Config
from app.core.errors import TooManyRequests
from app.core.logs import RateLimitedLog
from app.core.lua import Script, ScriptSet, SharedRoundTrips, registered
from app.core.metrics import RATE_LIMIT_UNAVAILABLE, RATE_LIMITED
from app.core.redis_client import Client, is_cluster, rate_limit_storage

log = logging.getLogger(__name__)

KEY_PREFIX = "rl"  # after REDIS_KEY_PREFIX: `<prefix>rl:...`

# rule name -> the Config field holding its rate ("10/minute"); the name is also the metric label.
RULES = {
    "login_per_username": "rate_login_per_username",
    "login_per_address": "rate_login_per_address",
    "signup_per_address": "rate_signup_per_address",
    "join_per_address": "rate_join_per_address",
    "join_per_user": "rate_join_per_user",
    "join_misses_per_address": "rate_join_misses_per_address",
    "join_misses_per_user": "rate_join_misses_per_user",
    "sockets_per_user": "rate_sockets_per_user",
    "sockets_per_address": "rate_sockets_per_address",
    "public_reads_per_address": "rate_public_reads_per_address",
    "api_per_user": "rate_api_per_user",
    "api_per_address": "rate_api_per_address",
    "score_writes_per_user": "rate_score_writes_per_user",
    "image_uploads_per_user": "rate_image_uploads_per_user",
    "score_writes_per_address": "rate_score_writes_per_address",
}


@dataclass(frozen=True)
class Limit:
    rule: str
    identifier: str


def client_address() -> str:
    """The client's address (the proxies in front, WEB_TRUSTED_PROXIES, are taken off by ProxyFix)."""
    return request.remote_addr or "unknown"


def limit(rule: str) -> Limit:
    """A rate limit of the current request: rules named `*_per_address` count by client address,
    `*_per_user` by the signed-in user (`g.principal`)."""
    if rule.endswith("_per_address"):
        return Limit(rule, client_address())
    if rule.endswith("_per_user"):
        return Limit(rule, str(g.principal.user_id))
    raise ValueError(f"{rule} names neither an address nor a user limit")


class RateLimitScripts(ScriptSet):
    LIBRARY = "rate_limits_lib.lua"
    NAMES = ("rate_limits_admit",)
    rate_limits_admit: Script


@dataclass(frozen=True)
class Admitted:
    """What `admit` leaves to its caller. `stopped`: the user's budgets are not spent yet (the revocation
    instant revokes the token, is not cached, or was not read), `instant`: the cached revocation
    instant read on the way (None when not cached; `UNREAD` when not read)."""

    stopped: bool
    instant: Any


class RateLimits:
    """`hit` consumes from a rule's budget and raises TooManyRequests when it is spent."""

    def __init__(self, config: Config, redis_client: Client):
        self.enabled = config.rate_limits_enabled
        self.items: dict[str, RateLimitItem] = {rule: parse(getattr(config, field))
                                                for rule, field in RULES.items()}
        self.storage = rate_limit_storage(config, redis_client, redis_keys.key(KEY_PREFIX))
        self.strategy = SlidingWindowCounterRateLimiter(self.storage)
        self._errors = RateLimitedLog(log)
        # One script call per request needs every key of it on one server: not on a cluster.
        # Concurrent requests of the process share their round trips (SharedRoundTrips).
        self._admissions = None if is_cluster(redis_client) or not isinstance(self.storage, RedisStorage) \
            else SharedRoundTrips(registered(RateLimitScripts, redis_client).rate_limits_admit, redis_client)

    def admit(self, first: Sequence[Limit], revocation_key: str, issued_at_ms: int,
              then: Sequence[Limit]) -> Admitted:
        """Hit `first` (refusing as `hit` does), read the revocation instant at `revocation_key`, and
        unless a token issued at `issued_at_ms` is revoked by it, or it is not cached, hit `then`: in one
        round trip. What is left to the caller (the revocation decided from the store, then `then`) is
        in the returned `Admitted`."""
        if self._admissions is None or not self.enabled:
            self.hit(*first)
            return Admitted(True, UNREAD)
        limits = [*first, *then]
        keys: list[str] = []
        args: list[Any] = [len(first), issued_at_ms]
        for limit in limits:
            item = self.items[limit.rule]
            key = item.key_for(limit.rule, limit.identifier)
            # The library's keys of a sliding window (RedisStorage.acquire_sliding_window_entry).
            keys += [self.storage.prefixed_key(self.storage._previous_window_key(key)),
                     self.storage.prefixed_key(self.storage._current_window_key(key))]
            args += [item.amount, item.get_expiry()]
        try:
            status, value = self._admissions([*keys, revocation_key], args)
        except Exception as exc:  # noqa: BLE001 - Redis away: fail open, never fail the request
            RATE_LIMIT_UNAVAILABLE.inc()
            self._errors.warning("storage", "rate limits are not enforced, Redis is unavailable: %s", exc)
            return Admitted(True, UNREAD)
        if status == 1:
            self._refuse(limits[value - 1])
        return Admitted(status == 2, value)

    def hit(self, *limits: Limit) -> None:
        """Count one request against every limit given; refuse it if any budget is spent."""
        for limit in limits:
            if not self._allowed(self.strategy.hit, limit):
                self._refuse(limit)

    def check(self, *limits: Limit) -> None:
        """Refuse if a budget is already spent, without consuming from it (misses are counted after)."""
        for limit in limits:
            if not self._allowed(self.strategy.test, limit):
                self._refuse(limit)

    def _allowed(self, consult, limit: Limit) -> bool:
        if not self.enabled:
            return True
        try:
            return consult(self.items[limit.rule], limit.rule, limit.identifier)
        except Exception as exc:  # noqa: BLE001 - Redis away: fail open, never fail the request
            RATE_LIMIT_UNAVAILABLE.inc()
            self._errors.warning("storage", "rate limits are not enforced, Redis is unavailable: %s", exc)
            return True

    def _refuse(self, limit: Limit) -> None:
        RATE_LIMITED.labels(limit.rule).inc()
        try:
            reset_at = self.strategy.get_window_stats(self.items[limit.rule], limit.rule,
                                                      limit.identifier).reset_time
            retry_after = max(1, math.ceil(reset_at - time.time()))
        except Exception:  # noqa: BLE001 - the refusal stands; the client just gets a coarser hint
            retry_after = int(self.items[limit.rule].get_expiry())
        raise TooManyRequests("too_many_requests", f"too many requests ({limit.rule.replace('_', ' ')}); "
                              f"try again in {retry_after} s", retry_after_s=retry_after)
