"""What a room sends, without services: one frame per socket for a close, and a lobby whose joins cost one
message each (to the host) while players get the count at most once per interval (JOIN_COUNT_INTERVAL_MS
while only joins moved the board)."""
from __future__ import annotations

import json
import uuid

import pytest

from app.web.rooms.connection import Connection
from app.web.rooms.hub import RoomHub
from app.web.rooms.room import Room, RoomReads, own_result, own_result_bytes

INTERVAL_S = 0.1


def message_of(sent: str | bytes) -> dict:
    """A sent message: a text, or a frame written as it is (a player's copy of a close)."""
    if isinstance(sent, str):
        return json.loads(sent)
    size = sent[1] & 0x7F
    return json.loads(sent[2 if size < 126 else 4 if size == 126 else 10:])


class Socket:
    def __init__(self, session_id: uuid.UUID, *, participant_id=None, is_host=False):
        self.sent: list[str | bytes] = []
        self.connection = Connection(self.sent.append, session_id, participant_id=participant_id,
                                     is_host=is_host, max_buffered=10_000, on_drop=lambda kind: None,
                                     on_sent=lambda kind: None)

    def messages(self) -> list[dict]:
        """What the socket's sender writes of all that was offered to it."""
        self.connection.close()
        self.connection.run_sender()
        return [message_of(m) for m in self.sent]


class Board:
    """The room's board in Redis: its version moves with every change, and it counts the players."""

    def __init__(self):
        self.version, self.players, self.reads_of_top = 0, 0, 0

    def top(self, session_id, limit):
        self.reads_of_top += 1
        return {"session_id": str(session_id), "version": self.version, "total_players": self.players,
                "entries": [{"rank": 1, "participant_id": "p", "nickname": "n", "score": 900}]}


def room_of(board: Board, results=None, count_interval_s: float | None = None,
            ) -> tuple[RoomHub, Room, Socket, list[Socket]]:
    reads = RoomReads(top=board.top, question_results=lambda s, q, players: results or {},
                      snapshot=lambda s, players: ({}, {}))
    hub = RoomHub(redis_client=None, reads=reads, interval_s=INTERVAL_S, count_interval_s=count_interval_s)
    session_id = uuid.uuid4()
    host = Socket(session_id, is_host=True)
    players = [Socket(session_id, participant_id=uuid.uuid4()) for _ in range(5)]
    room = Room(session_id, "room", "0-0", {host.connection, *(p.connection for p in players)})
    hub.rooms = {session_id: room}
    return hub, room, host, players


def test_a_close_is_one_frame_per_socket_with_the_players_own_result_and_the_board():
    board = Board()
    board.version = 7
    question = str(uuid.uuid4())
    hub, room, host, players = room_of(board)
    right = players[0].connection.participant_id
    hub.delivery.reads.question_results = lambda s, q, ids: {right: {
        "participant_id": str(right), "score": 900, "rank": 1, "streak": 1, "answered": True,
        "choice": 2, "correct": True, "points": 900, "streak_bonus": 0}}

    now = [1000.0]
    hub.ticker.clock = lambda: now[0]
    hub.delivery.dispatch(room, {"type": "question_closed", "question_id": question, "position": 0,
                                 "correct_choice": 2, "choice_counts": [0, 0, 1, 0], "reason": "host"})
    # The board went out with the close: the ticker has nothing to push, nor would a socket take it again.
    assert hub._dirty() == []
    assert not any(s.connection.offer_leaderboard(7, "{}") for s in (host, *players))
    # It counts as the room's push of this interval: a board moved right after waits for the next one.
    board.version = 8
    hub.delivery.dispatch(room, {"type": "participant_restored", "participant_id": "p", "player_count": 5})
    hub.ticker.tick()
    assert board.reads_of_top == 1
    now[0] += INTERVAL_S
    hub.ticker.tick()
    assert board.reads_of_top == 2

    [mine, newer] = players[0].messages()
    assert (newer["type"], newer["version"]) == ("leaderboard", 8)
    assert mine["type"] == "question_closed" and mine["leaderboard"]["version"] == 7
    assert mine["leaderboard"]["player_count"] == board.players
    assert mine["you"] == {"correct": True, "points": 900, "score": 900, "rank": 1, "streak": 1,
                           "streak_bonus": 0, "answered": True,
                           "answer": {"question_id": question, "choice": 2, "correct": True, "points": 900}}
    shared, restored, _ = host.messages()  # the host also hears who came back
    assert restored["type"] == "player_restored"
    assert "you" not in shared and {k: v for k, v in mine.items() if k != "you"} == shared
    for other in players[1:]:
        assert other.messages() == [shared, newer]  # no result read for them: the room's shared frame


def test_a_join_storm_gives_the_host_every_name_and_players_the_count_once_per_interval():
    board = Board()
    hub, room, host, players = room_of(board)
    now = [1000.0]
    hub.ticker.clock = lambda: now[0]
    joins = 500
    for n in range(1, joins + 1):  # 500 joins over half a second, the ticker running all along
        board.version, board.players = n, n
        hub.delivery.dispatch(room, {"type": "participant_joined", "nickname": f"player {n}",
                                     "participant_id": str(n), "player_count": n})
        hub.ticker.tick()
        now[0] += 0.5 / joins
    now[0] += INTERVAL_S
    hub.ticker.tick()  # the interval after the last join: its count goes out

    names = [m["nickname"] for m in host.messages() if m["type"] == "player_joined"]
    assert names == [f"player {n}" for n in range(1, joins + 1)]
    intervals = 0.5 / INTERVAL_S + 1
    for player in players:
        messages = player.messages()
        assert {m["type"] for m in messages} == {"leaderboard"}  # no name, no message per join
        assert len(messages) <= intervals + 1
        assert messages[-1]["player_count"] == joins
    assert board.reads_of_top <= intervals + 1  # one read per interval for the whole room


def test_a_board_only_joins_moved_goes_out_at_the_count_pace_and_any_other_move_at_the_rooms():
    board = Board()
    count_s = 1.0
    hub, room, host, players = room_of(board, count_interval_s=count_s)
    now = [1000.0]
    hub.ticker.clock = lambda: now[0]

    def join(n: int) -> None:
        board.version, board.players = n, n
        hub.delivery.dispatch(room, {"type": "participant_joined", "nickname": f"player {n}",
                                     "participant_id": str(n), "player_count": n})

    for n in range(1, 401):  # 400 joins over 2 s, the ticker running all along
        join(n)
        hub.ticker.tick()
        now[0] += 2.0 / 400
    now[0] += count_s
    hub.ticker.tick()  # the count interval after the last join: its count goes out
    assert len([m for m in host.messages() if m["type"] == "player_joined"]) == 400  # each name, at once
    assert players[0].messages()[-1]["player_count"] == 400
    assert board.reads_of_top <= 2.0 / count_s + 2  # a push per count interval, not per room interval

    # A removal moves more than the count: it goes out at the room's own interval, even after a join.
    pushes = board.reads_of_top
    now[0] += count_s
    join(401)
    hub.ticker.tick()  # a count interval passed since the last push: at once
    join(402)
    hub.delivery.dispatch(room, {"type": "participant_removed", "participant_id": "1", "player_count": 401})
    now[0] += INTERVAL_S
    hub.ticker.tick()
    assert board.reads_of_top == pushes + 2
    # And a join after a push waits for the count's interval again.
    join(403)
    now[0] += INTERVAL_S
    assert hub.ticker.tick() == pytest.approx(count_s - INTERVAL_S)  # due when the count's interval is up
    assert board.reads_of_top == pushes + 2
    now[0] += count_s - INTERVAL_S
    hub.ticker.tick()
    assert board.reads_of_top == pushes + 3
    assert players[1].messages()[-1]["version"] == 403


@pytest.mark.parametrize("you", [
    {"score": 1900, "rank": 3, "streak": 4, "answered": True, "choice": 0, "correct": True, "points": 1100,
     "streak_bonus": 300},
    {"score": 0, "rank": 12, "streak": 0, "answered": True, "choice": 3, "correct": False, "points": 0,
     "streak_bonus": 0},
    {"score": 500, "rank": 2000, "streak": 0, "answered": False, "choice": None, "correct": False,
     "points": 0, "streak_bonus": 0},
    {"score": 500, "rank": 7, "streak": 2, "correct": False, "points": 0},  # older reads: no answered/bonus
    {"score": None, "rank": 7, "streak": 2, "answered": False, "choice": None, "correct": False,
     "points": 0, "streak_bonus": 0},  # what the template does not cover goes through json.dumps
])
def test_a_players_own_part_of_a_close_is_the_bytes_json_dumps_writes(you):
    note = {"question_id": str(uuid.uuid4())}
    expected = json.dumps(own_result(you, note), separators=(",", ":")).encode()
    assert own_result_bytes(you, note, json.dumps(note["question_id"]).encode()) == expected
