"""Joining a room: a bounded number of sockets admitted at once per process, and their snapshots read
together, one read per room for the joins that arrive while its previous read runs.

A join makes a dozen round trips to Redis and PostgreSQL (slots, membership, the room's stream, the
snapshot). Admitted all at once, a storm of 1,000 joins in a process each holds a pooled connection
while the others run, the pool runs dry, and joins fail after its timeout ("No connection available")
while the process thrashes. `JoinGate` lets WS_JOINS_IN_FLIGHT joins run at once; the others wait
their turn in order, holding nothing but their socket (its ticket spent and its address's budget
charged before: a ticket that expired while it waited would close it 4401), and one that waits longer
than WS_JOIN_WAIT_S is closed with 1013 (reconnect).

A socket's snapshot reads the session, the board and the player's standing (several PostgreSQL queries,
a board read from Redis, and a rank computed over the whole room). Read once per socket, a lobby of
2,000 players filling up costs 2,000 such reads, each ranking the whole room, and the reads of a join
storm crowd out everything else the process does (the close of a question waits behind them). Here
the first join of a room reads at once; joins that arrive while that read runs wait for the next one,
which serves all of them (up to MAX_BATCH). A join never waits for more than the read in flight and
its own. Each socket joined its room before it asked, so nothing that happens in between is missed.
"""
from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager

from app.web.rooms.connection import Connection

# Sockets served by one read: the standings query takes their ids as one array.
MAX_BATCH = 500
# Far above any healthy read: a join never waits forever on a stuck database.
WAIT_S = 30.0

Snapshots = Callable[[uuid.UUID, list[Connection]], list[tuple[Connection, int, str]]]


class Turn(AbstractContextManager):
    """A join's turn: given back once the socket is in its room (or at the latest when it closes)."""

    def __init__(self, gate: JoinGate) -> None:
        self._gate: JoinGate | None = gate

    def release(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.give_back()

    def __exit__(self, *exc) -> None:
        self.release()


class JoinGate:
    """At most `in_flight` joins of this process at once; the others wait, first come first served."""

    def __init__(self, in_flight: int, wait_s: float) -> None:
        self.in_flight = in_flight
        self.wait_s = wait_s
        self._turns = threading.Semaphore(in_flight)

    def take(self) -> Turn | None:
        """A turn, once one is free; None when none came within `wait_s` (the socket is refused)."""
        if not self._turns.acquire(timeout=self.wait_s):
            return None
        return Turn(self)

    def give_back(self) -> None:
        self._turns.release()


class _Join:
    __slots__ = ("connection", "done", "result", "error")

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.done = threading.Event()
        self.result: tuple[int, str] | None = None
        self.error: BaseException | None = None


class JoinSnapshots:
    """`snapshot(session, connection)`: the (board version, snapshot text) of a joining socket, read with
    the other joins of its room waiting at the same time."""

    def __init__(self, read: Snapshots) -> None:
        self._read = read  # (session, connections) -> [(connection, version, text)], one read of the room
        self._lock = threading.Lock()
        self._waiting: dict[uuid.UUID, list[_Join]] = {}  # a room's joins not yet being read
        self._reading: set[uuid.UUID] = set()  # rooms whose reader runs

    def snapshot(self, session_id: uuid.UUID, connection: Connection) -> tuple[int, str]:
        join = _Join(connection)
        with self._lock:
            self._waiting.setdefault(session_id, []).append(join)
            start = session_id not in self._reading
            self._reading.add(session_id)
        if start:
            threading.Thread(target=self._read_joins, args=(session_id,), name="room-joins",
                             daemon=True).start()
        if not join.done.wait(WAIT_S):
            raise TimeoutError("the room's snapshot was not read in time")
        if join.error is not None:
            raise join.error
        assert join.result is not None
        return join.result

    def _read_joins(self, session_id: uuid.UUID) -> None:
        """Read the room's waiting joins, a batch at a time, until none is left."""
        while True:
            with self._lock:
                waiting = self._waiting.get(session_id, [])
                batch, rest = waiting[:MAX_BATCH], waiting[MAX_BATCH:]
                if not batch:
                    self._waiting.pop(session_id, None)
                    self._reading.discard(session_id)
                    return
                self._waiting[session_id] = rest
            try:
                made = {id(c): (version, text) for c, version, text in
                        self._read(session_id, [join.connection for join in batch])}
                for join in batch:
                    join.result = made[id(join.connection)]
            except Exception as exc:  # noqa: BLE001 - every join of the batch learns why; the next batch is read
                for join in batch:
                    join.error = exc
            finally:
                for join in batch:
                    join.done.set()
