"""Keeping the web worker's event loop free: blocking work runs in real threads.

A gevent worker serves every socket and request of the process on one loop; a call that holds the
CPU or a C library for long (scrypt, librdkafka) would stall them all. Such calls run in real
threads (gevent's thread pool, or `IdleThreads` of their own) while the loop goes on. CPU-heavy work a
client can ask for (a password hash) also waits behind a `FairGate`, which bounds how much of it waits
and shares it between clients, and a `CpuBudget`, which bounds the share of a core it takes
(app/accounts/hashing.py).
"""
from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from gevent import get_hub, monkey

T = TypeVar("T")


def off_the_event_loop(call: Callable[[], T]) -> T:
    """Run `call` in gevent's thread pool when the process runs on gevent; else just call it."""
    if monkey.is_module_patched("socket"):
        return get_hub().threadpool.apply(call)
    return call()


def yield_to_everything() -> None:
    """Make the calling thread (this thread only, on Linux) run only when nothing else of the machine
    wants the CPU: SCHED_IDLE, whose thread any waking thread of normal priority preempts at once (a
    request's greenlet does not wait for the end of its time slice), and nice 19 where that policy is
    refused."""
    thread = threading.get_native_id()
    try:
        os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
        return
    except (AttributeError, OSError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, thread, 19)
    except (AttributeError, OSError):  # not Linux, or not allowed: run at the usual priority
        pass


class IdleThreads:
    """Runs CPU-heavy calls off the event loop in `size` threads of their own that yield the CPU to
    everything else (`yield_to_everything`); the caller bounds how many run at once (a `FairGate`).
    The threads are this pool's only (gevent's own pool serves other blocking calls at the usual
    priority), made in the process that first runs a call (a forked worker makes its own). Without
    gevent there is no loop to keep free: the call runs in the caller's thread."""

    def __init__(self, size: int):
        self._size = size
        self._pool = None
        self._pool_pid = 0
        self._yielding: set[int] = set()  # the pool's threads that yield already

    def run(self, call: Callable[[], T]) -> T:
        def yielding() -> T:
            thread = threading.get_native_id()
            if thread not in self._yielding:
                yield_to_everything()
                self._yielding.add(thread)
            return call()

        if not monkey.is_module_patched("socket"):
            return call()
        return self._threads().apply(yielding)

    def _threads(self):
        if self._pool is None or self._pool_pid != os.getpid():
            from gevent.threadpool import ThreadPool

            self._pool, self._pool_pid, self._yielding = ThreadPool(self._size), os.getpid(), set()
        return self._pool


class QueueFull(Exception):
    """A `FairGate` refused a caller: its owner's share of the waiting places, or all of them, taken."""


class FairGate:
    """At most `slots` callers at once hold the gate; those past them wait, at most `waiting` of them and
    at most `per_owner` of one owner (a client address), else `QueueFull` at once. A freed slot goes to
    the owners in turn (round robin), each owner's callers in order: an owner who sends a flood waits
    behind itself, while another's one caller is served after at most one of the flood's per slot.
    Works with threads and, once gevent patched the standard library, with greenlets."""

    def __init__(self, slots: int, waiting: int, per_owner: int,
                 on_change: Callable[[int], None] = lambda delta: None):
        self._free = slots
        self._waiting_at_most = waiting
        self._per_owner = per_owner
        self._on_change = on_change  # called with +1 when a caller takes a slot, -1 when it gives it back
        self._lock = threading.Lock()
        self._turns: OrderedDict[str, deque[threading.Event]] = OrderedDict()  # the next owner first
        self._waiting = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    @contextmanager
    def held(self, owner: str) -> Iterator[None]:
        self._enter(owner)
        self._on_change(1)
        try:
            yield
        finally:
            self._on_change(-1)
            self._leave()

    def _enter(self, owner: str) -> None:
        with self._lock:
            if self._free and not self._waiting:
                self._free -= 1
                return
            turns = self._turns.get(owner)
            if self._waiting >= self._waiting_at_most or (turns and len(turns) >= self._per_owner):
                raise QueueFull(owner)
            turn = threading.Event()
            self._turns.setdefault(owner, deque()).append(turn)
            self._waiting += 1
        try:
            turn.wait()  # the slot is handed over by `_leave`, never given back in between
        except BaseException:  # the waiter was killed (a timeout, its greenlet ended): no slot is lost
            with self._lock:
                handed = turn.is_set()
                if not handed:  # still in its owner's line (`_leave` hands a turn over under the lock)
                    turns = self._turns[owner]
                    turns.remove(turn)
                    if not turns:
                        del self._turns[owner]
                    self._waiting -= 1
            if handed:
                self._leave()
            raise

    def _leave(self) -> None:
        with self._lock:
            if not self._turns:
                self._free += 1
                return
            owner, turns = self._turns.popitem(last=False)
            turn = turns.popleft()
            if turns:
                self._turns[owner] = turns  # its next caller after every other owner's
            self._waiting -= 1
            turn.set()


class CpuBudget:
    """Work that may use at most `share` of one core on average (0.25: a quarter), however much is asked
    for: `wait_turn` before a piece sleeps until the pieces before it are paid for, `charge` adds a
    piece's CPU seconds. Time nothing ran is not saved up, so a quiet hour buys no burst."""

    def __init__(self, share: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] | None = None):
        self._share = share
        self._clock = clock
        self._sleep = sleep
        self._paid_until = clock()

    def wait_turn(self) -> float:
        """Sleep until the work charged so far is paid for; returns the time to start charging from."""
        delay = self._paid_until - self._clock()
        if delay > 0:
            # time.sleep looked up now: a gevent worker imports this module before it patches `time`.
            (self._sleep or time.sleep)(delay)
        return self._clock()

    def charge(self, cpu_s: float, started: float) -> None:
        """A piece that started at `started` (`wait_turn`'s return) used `cpu_s` seconds of CPU."""
        self._paid_until = max(self._paid_until, started) + cpu_s / self._share
