"""One WebSocket connection: written at once when its socket can take a frame, else through a bounded
send buffer drained by its own sender.

A room's broadcast is one loop over its sockets (room.py, ticker.py) that writes each frame with a
non-blocking send: no sender is woken, and a socket costs one write syscall per frame. Only a socket
whose kernel buffer is full (a slow client) gets its frames queued; its sender writes them as the
client reads, so it delays nobody else, and past `max_buffered` it is closed (4408).
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from simple_websocket import ConnectionClosed

from app.web.rooms.frames import frame_of

log = logging.getLogger(__name__)

CLOSE_TOO_SLOW = 4408
CLOSE_SUPERSEDED = 4409
CLOSE_TOO_MANY_MESSAGES = 4429
# How long a handler that is done waits for its sender to send the close code: the WebSocket library
# closes with 1000 as soon as the handler returns.
SENDER_FINISH_S = 5.0
LEADERBOARD = "leaderboard"  # a session room's board: the kind of message a newer one supersedes


class _Queued:
    __slots__ = ("kind", "text", "version", "partial")

    def __init__(self, kind: str, text: str | bytes, version: int | None = None, partial: bool = False):
        self.kind, self.text, self.version = kind, text, version
        # The rest of a frame already partly written: it goes next, whole, and nothing replaces it.
        self.partial = partial

    def covered_by(self, kind: str, version: int) -> bool:
        """A queued state of `kind` that a snapshot (or a frame) at `version` makes stale."""
        return not self.partial and self.kind == kind and self.version is not None and self.version <= version


class Connection:
    """A socket in a room (a session's) or watching boards. `offer` never blocks.

    A queued leaderboard is replaced in place by a newer one of its kind, so a slow client always gets
    the newest board and the buffer never fills with boards. When other messages overflow the buffer
    the socket is closed with 4408: the client reconnects and gets a fresh snapshot instead of a
    silent gap.
    """

    def __init__(self, send: Callable[[str | bytes], Any], session_id: uuid.UUID | None, *,
                 participant_id: uuid.UUID | None, max_buffered: int, on_drop: Callable[[str], None],
                 on_sent: Callable[[str], None], close: Callable[[int, str], Any] | None = None,
                 is_host: bool = False, try_send: Callable[[str | bytes], int] | None = None):
        self._send = send
        # Writes what the socket takes now without waiting and says how many bytes of the frame it wrote
        # (frames.py); None: every message goes through the sender.
        self._try_send = try_send
        self._sending = False  # the sender holds a message it is writing: nothing may overtake it
        self._started = False  # before the sender starts, the snapshot waits at the head of the buffer
        self._close_socket = close
        self.id = uuid.uuid4().hex
        self.session_id = session_id
        self.participant_id = participant_id
        self.is_host = is_host
        self.max_buffered = max_buffered
        self._buffer: deque[_Queued] = deque()
        self._wakeup = threading.Condition()
        self._open = True
        # (code, reason) when the server closes the socket itself, after the sender stops.
        self._closing: tuple[int, str] | None = None
        self._on_drop = on_drop
        self._on_sent = on_sent
        self._versions: dict[str, int] = {}  # the newest version offered, per kind of superseding message
        self._sender: threading.Thread | None = None
        self.dropped = 0
        self.heard_at = time.monotonic()  # the last pong or message from the client (heartbeat.py)

    @property
    def is_player(self) -> bool:
        return self.participant_id is not None

    @property
    def is_open(self) -> bool:
        return self._open

    def offer(self, kind: str, text: str) -> bool:
        with self._wakeup:
            if not self._open or self._overflows(kind):
                return False
            self._write_or_queue(_Queued(kind, text))
        return True

    def _overflows(self, kind: str) -> bool:
        """A message of `kind` finds the buffer full: it is dropped and the socket closes (4408)."""
        if len(self._buffer) < self.max_buffered:
            return False
        self._drop(kind)
        self._closing = (CLOSE_TOO_SLOW, "too slow: reconnect for a fresh snapshot")
        self._open = False
        self._wakeup.notify()
        return True

    def _write_or_queue(self, queued: _Queued) -> None:
        """Write `queued` now if nothing is ahead of it and the socket takes it; else queue it (what a
        partial write left goes next, whole). The caller holds the lock: a non-blocking write never waits."""
        if self._try_send is None or not self._started or self._sending or self._buffer:
            self._buffer.append(queued)
            self._wakeup.notify()
            return
        frame = frame_of(queued.text)
        try:
            written = self._try_send(frame)
        except (ConnectionClosed, OSError):  # the peer went away: the handler cleans up
            self._open = False
            self._wakeup.notify()
            return
        except Exception:  # noqa: BLE001 - one socket must not stop the room's loop over the others
            log.exception("a socket's write failed on a %s message", queued.kind)
            self._open = False
            self._wakeup.notify()
            return
        if written >= len(frame):
            self._on_sent(queued.kind)
            return
        if written:
            queued = _Queued(queued.kind, frame[written:], partial=True)
        self._buffer.append(queued)
        self._wakeup.notify()

    @property
    def leaderboard_version(self) -> int:
        return self._versions.get(LEADERBOARD, -1)

    def offer_latest(self, kind: str, version: int, text: str) -> bool:
        """Messages of `kind` (one board's state) only move forward on a connection: an older or equal
        version is never sent, and a newer one replaces a queued one in place."""
        with self._wakeup:
            if not self._open or version <= self._versions.get(kind, -1):
                return False
            self._versions[kind] = version
            for queued in self._buffer:
                if queued.kind == kind and not queued.partial:
                    queued.text, queued.version = text, version
                    self._drop(kind)  # the older state is replaced, never sent
                    return True
            self._write_or_queue(_Queued(kind, text, version))
        return True

    def offer_with_state(self, kind: str, frame: str | bytes, state_kind: str, version: int) -> bool:
        """A message of `kind` that also carries the state of `state_kind` at `version` (a close's frame
        carries the board): queued states it covers are never sent, nor older ones later."""
        with self._wakeup:
            if not self._open or self._overflows(kind):
                return False
            if any(q.covered_by(state_kind, version) for q in self._buffer):
                self._buffer = deque(q for q in self._buffer if not q.covered_by(state_kind, version))
            self._versions[state_kind] = max(self._versions.get(state_kind, -1), version)
            self._write_or_queue(_Queued(kind, frame))
        return True

    def offer_leaderboard(self, version: int, text: str) -> bool:
        """A session room's leaderboard (see offer_latest)."""
        return self.offer_latest(LEADERBOARD, version, text)

    def offer_snapshot(self, version: int, text: str, kind: str = LEADERBOARD) -> None:
        """The snapshot goes first; states of `kind` queued before it that it already covers are dropped."""
        with self._wakeup:
            self._buffer = deque(q for q in self._buffer if not q.covered_by(kind, version))
            self._buffer.appendleft(_Queued("snapshot", text))
            self._versions[kind] = max(self._versions.get(kind, -1), version)
            self._wakeup.notify()

    def offer_resync(self, version: int, text: str, kind: str = LEADERBOARD) -> bool:
        """A fresh snapshot after the state was rebuilt: sent after what is already queued (older), and
        states of `kind` it covers are never sent after it."""
        with self._wakeup:
            if not self._open:
                return False
            self._buffer = deque(q for q in self._buffer if not q.covered_by(kind, version))
            self._write_or_queue(_Queued("snapshot", text))
            self._versions[kind] = max(self._versions.get(kind, -1), version)
            self._wakeup.notify()
        return True

    def heard(self, at: float | None = None) -> None:
        self.heard_at = time.monotonic() if at is None else at

    def offer_ping(self, frame: bytes) -> bool:
        """A protocol ping, unless the buffer is full (a client that reads nothing is closed by then)."""
        with self._wakeup:
            if not self._open or len(self._buffer) >= self.max_buffered:
                return False
            self._write_or_queue(_Queued("ping", frame))
        return True

    def _drop(self, kind: str) -> None:
        self.dropped += 1
        self._on_drop(kind)

    def close(self) -> None:
        with self._wakeup:
            self._open = False
            self._wakeup.notify()

    def close_with(self, code: int, reason: str) -> None:
        """Stop sending and close the socket with `code` (what was queued is not sent)."""
        with self._wakeup:
            self._closing = self._closing or (code, reason)
            self._open = False
            self._wakeup.notify()

    def start_sender(self) -> None:
        with self._wakeup:
            self._started = True
        self._sender = threading.Thread(target=self.run_sender, name="ws-sender", daemon=True)
        self._sender.start()

    def finish(self) -> None:
        """Stop sending and wait (a bounded while) until the sender stopped, having sent the close
        code the server chose (4408, 4429...) if any: the handler returns after this."""
        self.close()
        if self._sender is not None:
            self._sender.join(SENDER_FINISH_S)

    def run_sender(self) -> None:
        """Send buffered messages until the connection closes; a slow client only delays itself."""
        while True:
            with self._wakeup:
                self._sending = False
                while self._open and not self._buffer:
                    self._wakeup.wait()
                if self._closing or not self._buffer:
                    break
                queued = self._buffer.popleft()
                self._sending = True
            try:
                self._send(queued.text)
            except (ConnectionClosed, OSError):  # the peer went away: stop sending, the handler cleans up
                self.close()
                return
            except Exception:  # noqa: BLE001 - never a silent socket: say why it stopped sending
                log.exception("a socket's sender stopped on a %s message", queued.kind)
                self.close()
                return
            self._on_sent(queued.kind)
        if self._closing and self._close_socket is not None:
            try:
                self._close_socket(*self._closing)
            except Exception:
                pass
