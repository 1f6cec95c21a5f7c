"""The heartbeat's round (heartbeat.py): every socket pinged once a round, a slice of them at each step, so
their pongs never come back all at once; the silent ones closed, and who was heard told once a round."""
from __future__ import annotations

import logging
import threading
import uuid

from app.core.logs import RateLimitedLog
from app.web.rooms.connection import CLOSE_TOO_SLOW
from app.web.rooms.heartbeat import Heartbeat


class _Socket:
    """What the heartbeat uses of a Connection."""

    def __init__(self, session_id: uuid.UUID, participant_id: uuid.UUID | None) -> None:
        self.session_id, self.participant_id = session_id, participant_id
        self.heard_at = 0.0
        self.pings = 0
        self.closed: int | None = None

    def heard(self, at: float | None = None) -> None:
        self.heard_at = at

    def offer_ping(self, frame: bytes) -> bool:
        self.pings += 1
        return True

    def close_with(self, code: int, reason: str) -> None:
        self.closed = code


def _heartbeat(told: list) -> tuple[Heartbeat, list[float]]:
    clock = [100.0]
    heartbeat = Heartbeat(interval_s=5.0, silent_close_s=15.0, stopping=threading.Event(),
                          errors=RateLimitedLog(logging.getLogger(__name__)), present=told.append)
    heartbeat.clock = lambda: clock[0]
    return heartbeat, clock


def test_a_beat_pings_a_slice_of_the_sockets_and_a_round_pings_each_once():
    told: list = []
    heartbeat, _ = _heartbeat(told)
    session = uuid.uuid4()
    sockets = [_Socket(session, uuid.uuid4()) for _ in range(200)]
    for sock in sockets:
        heartbeat.watch(sock, lambda: True)
    heartbeat.beat()
    first = sum(s.pings for s in sockets)
    assert 0 < first <= len(sockets) // 10, f"one beat pinged {first} of {len(sockets)} sockets at once"
    for _ in range(heartbeat.steps - 1):
        heartbeat.beat()
    assert [s.pings for s in sockets] == [1] * len(sockets)
    # Who was heard goes to Redis once, at the round's end, for every player.
    assert len(told) == 1 and set(told[0][session]) == {s.participant_id for s in sockets}


def test_a_silent_socket_is_closed_at_its_turn_and_a_closed_one_is_not_told_as_heard():
    told: list = []
    heartbeat, clock = _heartbeat(told)
    session = uuid.uuid4()
    answering, silent, gone = (_Socket(session, uuid.uuid4()) for _ in range(3))
    heartbeat.watch(answering, lambda: True)
    heartbeat.watch(silent, lambda: False)
    heartbeat.watch(gone, lambda: True)
    clock[0] += 16.0  # longer than WS_SILENT_CLOSE_S since the silent one was last heard
    for _ in range(heartbeat.steps):
        heartbeat.beat()
        if gone.pings:
            heartbeat.forget(gone)  # it closed after it was heard this round
    assert silent.closed == CLOSE_TOO_SLOW and silent.pings == 0
    assert answering.closed is None and answering.pings == 1
    assert gone.pings == 1
    assert told == [{session: {answering.participant_id: told[0][session][answering.participant_id]}}]
