"""One heartbeat per web process: a protocol ping to every socket it holds, and the silent ones closed.

Browsers and WebSocket libraries answer a protocol ping by themselves, so a client needs to send
nothing to stay counted as there. A client that answered nothing (no pong, no message) for
WS_SILENT_CLOSE_S is gone even when its TCP connection still looks open (a phone that lost its
network, a laptop shut): its socket is closed (4408), and a player's place is free for a new device.
One thread pings every socket of the process, never a thread per socket. Each round it also tells
Redis which players were heard (`present`), so every process can tell a seat in use from a free one.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

from app.core.logs import RateLimitedLog
from app.web.rooms.connection import CLOSE_TOO_SLOW, Connection
from app.web.rooms.frames import PING_FRAME

SILENT = "no answer to pings: reconnect for a fresh snapshot"

# {session id: {participant id: when they were last heard, Unix ms}}
Heard = dict[uuid.UUID, dict[uuid.UUID, int]]


class Heartbeat:
    def __init__(self, *, interval_s: float, silent_close_s: float, stopping: threading.Event,
                 errors: RateLimitedLog, present: Callable[[Heard], None]) -> None:
        self.interval_s = interval_s
        self.silent_close_s = silent_close_s
        self._stopping = stopping
        self._errors = errors
        self._present = present
        self._watched: dict[Connection, Callable[[], bool]] = {}
        self._lock = threading.Lock()
        self.clock: Callable[[], float] = time.monotonic

    def watch(self, connection: Connection, took_pong: Callable[[], bool]) -> None:
        """Ping `connection` from now on; `took_pong()` says whether a pong came since it was last asked."""
        connection.heard(self.clock())
        with self._lock:
            self._watched[connection] = took_pong

    def forget(self, connection: Connection) -> None:
        with self._lock:
            self._watched.pop(connection, None)

    def run(self) -> None:
        while not self._stopping.wait(self.interval_s):
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                self._errors.warning("heartbeat", "a heartbeat round failed: %s", exc)

    def beat(self) -> None:
        """One round: note who answered, close who stayed silent too long, ping the others."""
        now, wall_ms = self.clock(), time.time() * 1000
        with self._lock:
            watched = list(self._watched.items())
        heard: Heard = {}
        for connection, took_pong in watched:
            if took_pong():
                connection.heard(now)
            if now - connection.heard_at > self.silent_close_s:
                connection.close_with(CLOSE_TOO_SLOW, SILENT)
                continue
            connection.offer_ping(PING_FRAME)
            if connection.session_id is not None and connection.participant_id is not None:
                heard.setdefault(connection.session_id, {})[connection.participant_id] = int(
                    wall_ms - (now - connection.heard_at) * 1000)
        if heard:
            self._present(heard)
