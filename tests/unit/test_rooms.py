"""The room fan-out without services: buffers, version order, isolation and coalescing."""
from __future__ import annotations

import json
import threading
import time
import uuid

from app.rooms.connection import Connection
from app.rooms.hub import Room, RoomHub, RoomReads


def make_connection(session_id, sent, max_buffered=8, participant_id=None, dropped=None):
    return Connection(sent.append, session_id, participant_id=participant_id, max_buffered=max_buffered,
                      on_drop=(dropped.append if dropped is not None else lambda kind: None),
                      on_sent=lambda kind: None)


def test_a_full_buffer_drops_and_counts_instead_of_blocking():
    dropped = []
    connection = make_connection(uuid.uuid4(), [], max_buffered=3, dropped=dropped)
    results = [connection.offer("player_joined", "{}") for _ in range(5)]
    assert results == [True, True, True, False, False]
    assert dropped == ["player_joined", "player_joined"] and connection.dropped == 2


def test_leaderboard_versions_only_move_forward_on_a_connection():
    sent = []
    connection = make_connection(uuid.uuid4(), sent)
    assert [connection.offer_leaderboard(v, str(v)) for v in (3, 2, 3, 5, 4)] == [True, False, False, True, False]
    connection.close()
    connection.run_sender()
    assert sent == ["3", "5"]


def test_a_slow_client_does_not_delay_the_others():
    release = threading.Event()
    slow_sent, fast_sent = [], []

    def slow_send(text):
        release.wait(5)
        slow_sent.append(text)

    session_id = uuid.uuid4()
    slow = Connection(slow_send, session_id, participant_id=None, max_buffered=2, on_drop=lambda k: None,
                      on_sent=lambda k: None)
    fast = make_connection(session_id, fast_sent)
    for connection in (slow, fast):
        threading.Thread(target=connection.run_sender, daemon=True).start()
    for i in range(5):
        slow.offer("x", str(i))
        fast.offer("x", str(i))
    deadline = time.monotonic() + 5
    while len(fast_sent) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fast_sent == ["0", "1", "2", "3", "4"] and slow_sent == []
    assert slow.dropped >= 2
    release.set()
    slow.close()
    fast.close()


class FakeReads:
    def __init__(self):
        self.top_calls = []
        self.version = 0

    def reads(self) -> RoomReads:
        def top(session_id, limit):
            self.top_calls.append(session_id)
            self.version += 1
            return {"version": self.version, "total_players": 1,
                    "entries": [{"rank": 1, "participant_id": str(session_id), "nickname": "n", "score": 1}]}
        return RoomReads(stream_key=lambda s: f"room:{{{s}}}", top=top, question_results=lambda s, q, p: {})


def test_a_burst_becomes_one_leaderboard_read_per_room_per_interval_and_rooms_stay_apart():
    fake = FakeReads()
    hub = RoomHub(redis_client=None, reads=fake.reads(), interval_s=0.05)
    room_a, room_b = uuid.uuid4(), uuid.uuid4()
    sent_a, sent_b = [], []
    conn_a, conn_b = make_connection(room_a, sent_a), make_connection(room_b, sent_b)
    hub.rooms = {room_a: Room(room_a, "a", "0-0", {conn_a}), room_b: Room(room_b, "b", "0-0", {conn_b})}
    for _ in range(2000):
        hub._dispatch(hub.rooms[room_a], {"type": "answer_scored"})
    threading.Thread(target=hub._push_leaderboards, daemon=True).start()
    time.sleep(0.2)
    hub.stop()
    assert fake.top_calls and set(fake.top_calls) == {room_a}
    assert len(fake.top_calls) == 1, "a burst is read once, not once per answer"
    for connection in (conn_a, conn_b):
        connection.close()
        connection.run_sender()
    assert len(sent_a) == 1 and json.loads(sent_a[0])["entries"][0]["participant_id"] == str(room_a)
    assert sent_b == []
