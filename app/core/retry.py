"""One backoff for every retry loop of the system (relay, worker, room streams)."""
from __future__ import annotations


class Backoff:
    """Delays between attempts: `first_s`, then doubling up to `cap_s`; `reset()` after a success."""

    def __init__(self, first_s: float = 0.1, cap_s: float = 10.0):
        self.first_s = first_s
        self.cap_s = cap_s
        self._next = first_s

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.cap_s)
        return delay

    def reset(self) -> None:
        self._next = self.first_s
