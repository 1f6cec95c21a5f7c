"""One WebSocket connection with a bounded send buffer, drained by its own sender."""
from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from typing import Any, Callable

log = logging.getLogger(__name__)


class Connection:
    """A socket in a room. `offer` never blocks: a full buffer drops the message and counts it."""

    def __init__(self, send: Callable[[str], Any], session_id: uuid.UUID, *, participant_id: uuid.UUID | None,
                 max_buffered: int, on_drop: Callable[[str], None], on_sent: Callable[[str], None]):
        self._send = send
        self.session_id = session_id
        self.participant_id = participant_id
        self.max_buffered = max_buffered
        self._buffer: deque[tuple[str, str]] = deque()
        self._wakeup = threading.Condition()
        self._open = True
        self._on_drop = on_drop
        self._on_sent = on_sent
        self.leaderboard_version = -1
        self.dropped = 0

    @property
    def is_player(self) -> bool:
        return self.participant_id is not None

    @property
    def is_open(self) -> bool:
        return self._open

    def offer(self, kind: str, text: str) -> bool:
        with self._wakeup:
            if not self._open:
                return False
            if len(self._buffer) >= self.max_buffered:
                self.dropped += 1
                self._on_drop(kind)
                return False
            self._buffer.append((kind, text))
            self._wakeup.notify()
        return True

    def offer_leaderboard(self, version: int, text: str) -> bool:
        """Leaderboards only move forward on a connection: an older or equal version is never sent."""
        with self._wakeup:
            if version <= self.leaderboard_version:
                return False
            self.leaderboard_version = version
        return self.offer("leaderboard", text)

    def close(self) -> None:
        with self._wakeup:
            self._open = False
            self._wakeup.notify()

    def run_sender(self) -> None:
        """Send buffered messages until the connection closes; a slow client only delays itself."""
        while True:
            with self._wakeup:
                while self._open and not self._buffer:
                    self._wakeup.wait()
                if not self._buffer:
                    return
                kind, text = self._buffer.popleft()
            try:
                self._send(text)
            except Exception:  # the peer went away: stop sending, the handler cleans up
                self.close()
                return
            self._on_sent(kind)
