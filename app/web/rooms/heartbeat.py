"""One heartbeat per web process: a protocol ping to every socket it holds, and the silent ones closed.

Browsers and WebSocket libraries answer a protocol ping by themselves, so a client needs to send
nothing to stay counted as there. A client that answered nothing (no pong, no message) for
WS_SILENT_CLOSE_S is gone even when its TCP connection still looks open (a phone that lost its
network, a laptop shut): its socket is closed (4408), and a player's place is free for a new device.
One thread pings every socket of the process, never a thread per socket. Each round it also tells
Redis which players were heard (`present`), so every process can tell a seat in use from a free one.

A round is ROUND_STEPS steps spread over the interval, each pinging its own slice of the sockets (each
socket is pinged once a round, as before). Pinged all at once, 5,000 sockets answer within a few
milliseconds, and the worker spends the next half second waking their readers for the pongs, while a
question's close that arrived meanwhile waits its turn behind them.
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
# Steps of a round: a step pings (and checks) this share of the process's sockets.
ROUND_STEPS = 20


class Heartbeat:
    def __init__(self, *, interval_s: float, silent_close_s: float, stopping: threading.Event,
                 errors: RateLimitedLog, present: Callable[[Heard], None]) -> None:
        self.interval_s = interval_s
        self.silent_close_s = silent_close_s
        self._stopping = stopping
        self._errors = errors
        self._present = present
        # The sockets of each step's slice: a new socket joins the smallest.
        self._slices: list[dict[Connection, Callable[[], bool]]] = [{} for _ in range(ROUND_STEPS)]
        self._slice_of: dict[Connection, int] = {}
        self._step = 0  # the slice the next beat handles
        self._heard: dict[Connection, int] = {}  # players heard this round (Unix ms), told at its end
        self._lock = threading.Lock()
        self.clock: Callable[[], float] = time.monotonic

    @property
    def steps(self) -> int:
        """Beats a round takes: each socket is pinged once in that many."""
        return len(self._slices)

    def watch(self, connection: Connection, took_pong: Callable[[], bool]) -> None:
        """Ping `connection` from now on; `took_pong()` says whether a pong came since it was last asked."""
        connection.heard(self.clock())
        with self._lock:
            if connection in self._slice_of:
                return
            n = min(range(len(self._slices)), key=lambda i: len(self._slices[i]))
            self._slices[n][connection] = took_pong
            self._slice_of[connection] = n

    def forget(self, connection: Connection) -> None:
        with self._lock:
            n = self._slice_of.pop(connection, None)
            if n is not None:
                self._slices[n].pop(connection, None)

    def run(self) -> None:
        while not self._stopping.wait(self.interval_s / self.steps):
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - the next beat tries again
                self._errors.warning("heartbeat", "a heartbeat round failed: %s", exc)

    def beat(self) -> None:
        """One step of a round, on its slice of the sockets: note who answered, close who stayed silent
        too long, ping the others. The round's last step tells Redis who was heard."""
        now, wall_ms = self.clock(), time.time() * 1000
        with self._lock:
            watched = list(self._slices[self._step].items())
            self._step = (self._step + 1) % len(self._slices)
            round_over = self._step == 0
        for connection, took_pong in watched:
            if took_pong():
                connection.heard(now)
            if now - connection.heard_at > self.silent_close_s:
                connection.close_with(CLOSE_TOO_SLOW, SILENT)
                continue
            connection.offer_ping(PING_FRAME)
            if connection.session_id is not None and connection.participant_id is not None:
                self._heard[connection] = int(wall_ms - (now - connection.heard_at) * 1000)
        if round_over:
            self._tell_heard()

    def _tell_heard(self) -> None:
        """Who was heard this round, among the sockets still open (a closed one's seat is free already)."""
        with self._lock:
            heard_at, self._heard = self._heard, {}
            heard: Heard = {}
            for connection, at in heard_at.items():
                if connection in self._slice_of:
                    heard.setdefault(connection.session_id, {})[connection.participant_id] = at
        if heard:
            self._present(heard)
