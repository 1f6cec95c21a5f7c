"""Keeping the web worker's event loop free: blocking work runs in real threads.

A gevent worker serves every socket and request of the process on one loop; a call that holds the
CPU or a C library for long (scrypt, librdkafka) would stall them all. Such calls run in real
threads (gevent's thread pool, or a `Bounded` pool of their own) while the loop goes on.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
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


class Bounded:
    """Runs CPU-heavy calls off the event loop, at most `slots` at a time, in threads of their own that
    yield the CPU to everything else (`yield_to_everything`): on a busy machine the loop and its sockets
    come first, the heavy call waits. The threads are this pool's only (gevent's own pool serves other
    blocking calls at the usual priority), made in the process that first runs a call (a forked
    worker makes its own)."""

    def __init__(self, slots: int, on_change: Callable[[int], None] = lambda delta: None):
        self._slots = slots
        self._gate = threading.BoundedSemaphore(slots)  # gevent's own semaphore once patched
        self._on_change = on_change
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

        with self._gate:
            self._on_change(1)
            try:
                if not monkey.is_module_patched("socket"):
                    return call()  # no event loop to keep free: the caller's thread, as it is
                return self._threads().apply(yielding)
            finally:
                self._on_change(-1)

    def _threads(self):
        if self._pool is None or self._pool_pid != os.getpid():
            from gevent.threadpool import ThreadPool

            self._pool, self._pool_pid, self._yielding = ThreadPool(self._slots), os.getpid(), set()
        return self._pool
