"""Open WebSockets per client address and per user, counted across every web process in Redis.

Each process counts its own open sockets in one hash per address (`ws-slots:a:<address>`) or user
(`ws-slots:u:<user id>`), beside the end of its lease there (lua/slots_lib.lua), and renews its leases
every third of WS_SLOT_LEASE_S while it lives. Taking a slot adds up the processes whose lease has not
ended, so the sockets of a process that was killed stop counting one lease later, never forever. When
Redis is away the socket is let in uncounted (as the rate limits fail open): it needs Redis anyway.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import redis as redis_lib
from redis.exceptions import RedisClusterException

from app.core import redis_keys
from app.core.logs import RateLimitedLog
from app.core.lua import Script, ScriptSet, registered
from app.core.metrics import RATE_LIMITED
from app.core.redis_client import node_client

log = logging.getLogger(__name__)

_REDIS_ERRORS = (redis_lib.RedisError, RedisClusterException)
# Leases renewed per pipeline. A process holding 5,000 sockets renews 5,000 leases every third of a lease:
# in one pipeline, encoding the commands and decoding the replies ran for hundreds of milliseconds
# without yielding, and every socket of the worker waited; between pipelines the worker runs the rest.
RENEW_BATCH = 200


class SlotScripts(ScriptSet):
    LIBRARY = "slots_lib.lua"
    NAMES = ("slot_take", "slot_give_back", "slot_renew")

    slot_take: Script
    slot_give_back: Script
    slot_renew: Script


class SocketSlots:
    """`address(...)` and `user(...)` hold one slot while a socket is open, or tell it is refused."""

    def __init__(self, redis, *, per_address: int, per_user: int, lease_s: float):
        self.redis = redis
        self.per_address, self.per_user = per_address, per_user
        self.lease_ms = max(1, int(lease_s * 1000))
        self.process = uuid.uuid4().hex  # this web process (a gunicorn worker) in every hash
        self._held: Counter[str] = Counter()  # key -> this process's sockets counted there
        self._lock = threading.Lock()
        self._renewing = False
        self._errors = RateLimitedLog(log)

    @contextmanager
    def address(self, address: str) -> Iterator[bool]:
        """True while a slot of `address` is held; False when WS_MAX_PER_ADDRESS are open already."""
        with self._slot(redis_keys.key(f"ws-slots:a:{address}"), self.per_address,
                        "ws_max_per_address") as taken:
            yield taken

    @contextmanager
    def user(self, user_id: uuid.UUID) -> Iterator[bool]:
        """True while a slot of the user is held; False when WS_MAX_PER_USER are open already."""
        with self._slot(redis_keys.key(f"ws-slots:u:{user_id}"), self.per_user, "ws_max_per_user") as taken:
            yield taken

    @contextmanager
    def _slot(self, key: str, limit: int, rule: str) -> Iterator[bool]:
        scripts = registered(SlotScripts, self.redis)
        try:
            taken = bool(scripts.slot_take([key], [self.process, limit, self.lease_ms]))
        except _REDIS_ERRORS as exc:
            self._errors.warning("take", "open sockets are not counted, Redis is unavailable: %s", exc)
            taken = None
        if taken is None:  # let in uncounted
            yield True
            return
        if not taken:
            RATE_LIMITED.labels(rule).inc()
            yield False
            return
        with self._lock:
            self._held[key] += 1
            self._start_renewing()
        try:
            yield True
        finally:
            with self._lock:
                self._held[key] -= 1
                if self._held[key] <= 0:
                    del self._held[key]
            try:
                scripts.slot_give_back([key], [self.process])
            except _REDIS_ERRORS as exc:  # the next renewal writes the count this process holds
                self._errors.warning("give_back", "cannot give back a socket's slot: %s", exc)

    def _start_renewing(self) -> None:
        if not self._renewing:
            self._renewing = True
            threading.Thread(target=self._renew_forever, name="ws-slot-leases", daemon=True).start()

    def _renew_forever(self) -> None:
        while True:
            time.sleep(self.lease_ms / 3000)
            self.renew()

    def renew(self) -> None:
        """Renew this process's leases, with the count it holds under each (a third of a lease apart)."""
        with self._lock:
            held = dict(self._held)
        try:
            by_node: dict[int, tuple[object, list[tuple[str, int]]]] = {}
            for key, count in held.items():  # one pipeline per node: a cluster's own pipeline refuses scripts
                node = node_client(self.redis, key)
                by_node.setdefault(id(node), (node, []))[1].append((key, count))
            for node, leases in by_node.values():
                scripts = registered(SlotScripts, node)
                for start in range(0, len(leases), RENEW_BATCH):
                    pipe = node.pipeline(transaction=False)
                    for key, count in leases[start:start + RENEW_BATCH]:
                        scripts.slot_renew([key], [self.process, count, self.lease_ms], client=pipe)
                    pipe.execute()
        except _REDIS_ERRORS as exc:  # renewed at the next round; a lease is three rounds long
            self._errors.warning("renew", "cannot renew the leases of open sockets: %s", exc)
