"""What the room unit tests share: a sent message read back, a connection that records what it is
sent, and the room's reads without PostgreSQL or Redis."""
from __future__ import annotations

import json

from app.web.rooms.connection import Connection
from app.web.rooms.room import RoomReads


def message_of(sent: str | bytes) -> dict:
    """A sent message: a text, or a frame written as it is (a player's copy of a close)."""
    if isinstance(sent, str):
        return json.loads(sent)
    size = sent[1] & 0x7F
    return json.loads(sent[2 if size < 126 else 4 if size == 126 else 10:])


def make_connection(session_id, sent, max_buffered=8, participant_id=None, dropped=None):
    return Connection(sent.append, session_id, participant_id=participant_id, max_buffered=max_buffered,
                      on_drop=(dropped.append if dropped is not None else lambda kind: None),
                      on_sent=lambda kind: None)


class FakeReads:
    def __init__(self):
        self.top_calls = []
        self.snapshot_calls = []
        self.version = 0

    def reads(self) -> RoomReads:
        def top(session_id, limit):
            self.top_calls.append(session_id)
            self.version += 1
            return {"version": self.version, "total_players": 1,
                    "entries": [{"rank": 1, "participant_id": str(session_id), "nickname": "n", "score": 1}]}
        def snapshot(session_id, participant_ids):
            self.snapshot_calls.append(list(participant_ids))
            shared = {"session": {"id": str(session_id), "player_count": 3},
                      "leaderboard": top(session_id, 10)}
            return shared, {pid: {"participant_id": str(pid), "score": 0, "rank": 1}
                            for pid in participant_ids}

        return RoomReads(top=top, question_results=lambda s, q, p: {}, snapshot=snapshot)
