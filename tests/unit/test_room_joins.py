"""A room's joins without services: joining sockets share one snapshot read, and the join gate admits
a bounded number at a time, in order, refusing one that waits too long."""
from __future__ import annotations

import json
import threading
import uuid

import pytest

from app.web.rooms.connection import Connection
from app.web.rooms.hub import RoomHub
from app.web.rooms.joins import JoinGate
from tests.helpers import wait_until
from tests.unit.rooms_support import FakeReads, make_connection


def test_joins_arriving_while_a_room_snapshot_is_read_share_the_next_read():
    """A lobby filling up: the first join reads at once, the joins that arrive meanwhile are served by one
    read together (each with its own role and standing), not by one read each."""
    fake = FakeReads()
    reads = fake.reads()
    first_read, release = threading.Event(), threading.Event()
    plain = reads.snapshot

    def held_snapshot(session_id, participant_ids):
        if not first_read.is_set():
            first_read.set()
            release.wait(5)
        return plain(session_id, participant_ids)

    reads.snapshot = held_snapshot
    hub = RoomHub(redis_client=None, reads=reads, interval_s=60)
    room_id = uuid.uuid4()
    players = [make_connection(room_id, [], participant_id=uuid.uuid4()) for _ in range(6)]
    host = Connection(lambda text: None, room_id, participant_id=None, is_host=True, max_buffered=8,
                      on_drop=lambda kind: None, on_sent=lambda kind: None)
    got: dict = {}

    def join(connection):
        got[connection] = hub.snapshot(connection)

    threads = [threading.Thread(target=join, args=(players[0],))]
    threads[0].start()
    assert first_read.wait(5)
    for connection in [*players[1:], host]:
        threads.append(threading.Thread(target=join, args=(connection,)))
        threads[-1].start()
    wait_until(lambda: len(hub.joins._waiting.get(room_id, [])) == 6, "the later joins are waiting")
    release.set()
    for thread in threads:
        thread.join(5)
    assert fake.snapshot_calls == [[players[0].participant_id], [p.participant_id for p in players[1:]]]
    for player in players:
        version, text = got[player]
        snapshot = json.loads(text)
        assert (snapshot["role"], snapshot["you"]["participant_id"]) == ("player", str(player.participant_id))
        assert version == snapshot["leaderboard"]["version"]
    host_snapshot = json.loads(got[host][1])
    assert host_snapshot["role"] == "host" and "you" not in host_snapshot


def test_a_failed_room_snapshot_fails_its_joins_and_the_next_join_reads_again():
    fake = FakeReads()
    reads = fake.reads()
    plain, failures = reads.snapshot, [RuntimeError("PostgreSQL is away")]

    def failing_once(session_id, participant_ids):
        if failures:
            raise failures.pop()
        return plain(session_id, participant_ids)

    reads.snapshot = failing_once
    hub = RoomHub(redis_client=None, reads=reads, interval_s=60)
    room_id = uuid.uuid4()
    first, second = (make_connection(room_id, [], participant_id=uuid.uuid4()) for _ in range(2))
    with pytest.raises(RuntimeError, match="PostgreSQL is away"):
        hub.snapshot(first)
    version, text = hub.snapshot(second)
    assert json.loads(text)["you"]["participant_id"] == str(second.participant_id)


def test_joins_beyond_the_gate_wait_for_a_turn_and_a_turn_is_given_back_once():
    gate = JoinGate(in_flight=2, wait_s=30)
    first, second = gate.take(), gate.take()
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(gate.take()))
    waiter.start()
    waiter.join(0.2)
    assert got == [] and waiter.is_alive(), "a third join runs only once a turn is free"
    first.release()
    first.release()  # given back once, however often the socket's code says so
    waiter.join(5)
    assert len(got) == 1 and got[0] is not None
    assert gate._turns.acquire(blocking=False) is False, "two turns in use: none left"
    second.release()
    got[0].release()
    assert gate.take() is not None and gate.take() is not None


def test_a_join_that_gets_no_turn_within_the_wait_is_refused():
    gate = JoinGate(in_flight=1, wait_s=0.01)
    with gate.take():
        assert gate.take() is None
    assert gate.take() is not None
