"""Keeping the web worker's event loop free: blocking work runs in gevent's thread pool.

A gevent worker serves every socket and request of the process on one loop; a call that holds the
CPU or a C library for long (scrypt, librdkafka) would stall them all. Such calls run in real
threads of gevent's pool, at most a few at a time, while the loop goes on.
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


def _lowest_priority() -> None:
    """Let the calling thread yield the CPU to anything else (nice 19, this thread only on Linux)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):  # not Linux, or not allowed: run at the usual priority
        pass


class Bounded:
    """Runs CPU-heavy calls off the event loop, at most `slots` at a time, each in a thread of the
    lowest priority: on a busy machine the loop and its sockets come first, the heavy call waits."""

    def __init__(self, slots: int, on_change: Callable[[int], None] = lambda delta: None):
        self._slots = threading.BoundedSemaphore(slots)  # gevent's own semaphore once patched
        self._on_change = on_change

    def run(self, call: Callable[[], T]) -> T:
        def at_lowest_priority() -> T:
            _lowest_priority()
            return call()

        with self._slots:
            self._on_change(1)
            try:
                return off_the_event_loop(at_lowest_priority)
            finally:
                self._on_change(-1)
