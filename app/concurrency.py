"""Keeping the web worker's event loop free: blocking work runs in gevent's thread pool.

A gevent worker serves every socket and request of the process on one loop; a call that holds the
CPU or a C library for long (scrypt, librdkafka) would stall them all. Such calls run in real
threads of gevent's pool, at most a few at a time, while the loop goes on.
"""
from __future__ import annotations

import threading
from typing import Callable, TypeVar

from gevent import get_hub, monkey

T = TypeVar("T")


def off_the_event_loop(call: Callable[[], T]) -> T:
    """Run `call` in gevent's thread pool when the process runs on gevent; else just call it."""
    if monkey.is_module_patched("socket"):
        return get_hub().threadpool.apply(call)
    return call()


class Bounded:
    """Runs calls off the event loop, at most `slots` at a time; the rest wait their turn cooperatively."""

    def __init__(self, slots: int, on_change: Callable[[int], None] = lambda delta: None):
        self._slots = threading.BoundedSemaphore(slots)  # gevent's own semaphore once patched
        self._on_change = on_change

    def run(self, call: Callable[[], T]) -> T:
        with self._slots:
            self._on_change(1)
            try:
                return off_the_event_loop(call)
            finally:
                self._on_change(-1)
