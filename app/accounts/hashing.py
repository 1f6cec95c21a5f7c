"""Password hashes (scrypt, werkzeug), the work a login or a registration asks of the CPU: about 0.1 s of a
core and 32 MiB each, whoever sends the request, so what one client can start is bounded and shared
fairly before any of it runs.

A web process hashes two passwords at once (`SLOTS`), off its event loop in threads that run only when
nothing else of the machine wants the CPU, and spends at most PASSWORD_HASH_CPU_SHARE of a core on
passwords that did not match, on average (a `CpuBudget`): a core kept busy, even by work of the lowest
priority, still delays the wake-ups of the web's requests (docs/performance.md, "Password hashes on a
budget"), so the budget, not the priority, is what leaves the cores to the web. Only a wrong password
(or an unknown user's) is charged: that is the work a guesser repeats at will, while a registration or a
login that matched is done once and is already bounded by the per-address rate limits, so a class
signing in together is not spaced out to the budget's pace. While wrong passwords have the budget in
debt, every hash waits for its turn, a right one too (nobody knows which it is before hashing). Logins
past the two (and past the budget) wait their turn, at most PASSWORD_HASHES_WAITING of them and a
quarter of those from one client address; the turns go to the addresses in turn, so a flood of wrong
logins from one address waits behind itself while another address's login is next. A login past its
address's share, or past the whole queue, gets 429 `logins_busy` with Retry-After at once.
"""
from __future__ import annotations

import time

from werkzeug.security import check_password_hash, generate_password_hash

from app.core.concurrency import CpuBudget, FairGate, IdleThreads, QueueFull
from app.core.errors import TooManyRequests
from app.core.metrics import PASSWORD_HASHES, RATE_LIMITED

# Two hashes at once per process: the two cores stay shared with everything else.
SLOTS = 2
# The error code of a login or registration refused for the queue (429).
LOGINS_BUSY = "logins_busy"


class PasswordHashing:
    """A web process's password hashes: `make` for a registration, `matches` for a login, each charged to
    the client address `client` (see the top)."""

    def __init__(self, waiting: int, cpu_share: float, slots: int = SLOTS):
        self._gate = FairGate(slots, waiting, per_owner=max(1, waiting // 4), on_change=PASSWORD_HASHES.inc)
        self._budget = CpuBudget(cpu_share)
        self._threads = IdleThreads(slots)

    def make(self, password: str, client: str) -> str:
        return self._run(lambda: generate_password_hash(password), client, charged=lambda _hash: False)

    def matches(self, password_hash: str, password: str, client: str) -> bool:
        return self._run(lambda: check_password_hash(password_hash, password), client,
                         charged=lambda matched: not matched)

    def _run(self, hashing, client: str, charged):
        """`hashing` in a slot and a thread of its own, its turn after the budget's debt is paid; its CPU
        is charged to the budget when `charged(result)` says so (a password that did not match)."""
        def measured():
            began = time.thread_time()
            return hashing(), time.thread_time() - began

        try:
            with self._gate.held(client):
                started = self._budget.wait_turn()
                result, cpu_s = self._threads.run(measured)
                if charged(result):
                    self._budget.charge(cpu_s, started)
                return result
        except QueueFull:
            RATE_LIMITED.labels(rule="password_hashing").inc()
            raise TooManyRequests(LOGINS_BUSY, "too many logins from your address are waiting to be "
                                  "checked; try again in a second", retry_after_s=1) from None
