"""A room of the fan-out (hub.py): its sockets, and what it does with each notification of its stream.

A room works through its notifications in order on a thread of its own while it has any (the close of a
question reads every player's result from PostgreSQL), so one slow query delays that room only, never
the stream reader or another room. A notification after which the room's board shows something new
marks it dirty for the ticker (ticker.py). Rooms never share a message: each message is built from, and
sent to, a single room.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.core.logs import RateLimitedLog
from app.quiz.events import QUIZ_SESSION
from app.web.rooms.connection import CLOSE_SUPERSEDED, LEADERBOARD, Connection
from app.web.rooms.frames import payload_frame
from app.web.rooms.journey import record_push

log = logging.getLogger(__name__)

LEADERBOARD_SIZE = 10
PODIUM_SIZE = 5
# Notifications after which the room's board shows something new. An answer to an open question
# (`answer_received`) moves nothing: its points stay hidden until the question closes.
BOARD_MOVES = {"answer_scored", "participant_joined", "question_closed", "participant_removed",
               "participant_restored"}
CLOSE_REMOVED = 4403
CLOSE_DELETED = 4404


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


# How every close frame begins; a player's copy puts its own `you` right after it.
CLOSE_HEAD = b'{"type":"question_closed",'


# A player's own part, filled in per socket (`own_result_bytes`): the fields of `own_result` in its order.
_OWN = (b'{"correct":%s,"points":%d,"score":%d,"rank":%d,"streak":%d,"streak_bonus":%d,"answered":%s,'
        b'"answer":%s}')
_OWN_ANSWER = b'{"question_id":%s,"choice":%d,"correct":%s,"points":%d}'
_JSON_BOOL = {True: b"true", False: b"false"}
_OWN_INTS = ("points", "score", "rank", "streak")


def own_result_bytes(you: dict[str, Any], note: dict[str, Any], question_id_json: bytes) -> bytes:
    """`own_result` encoded as JSON, the same bytes `json.dumps` writes, from a template of its few fields
    (a close encodes one per player socket: 2,000 json.dumps calls per close cost more than the rest of the
    close). `question_id_json` is the note's question id as JSON, encoded once per close. Anything the
    template does not cover exactly (a missing or non-int field) goes through json.dumps."""
    try:
        correct, bonus, answered, choice = (you["correct"], you.get("streak_bonus", 0),
                                            you.get("answered", False), you.get("choice"))
        if (type(correct) is not bool or type(answered) is not bool or type(bonus) is not int
                or any(type(you[k]) is not int for k in _OWN_INTS)
                or not (choice is None or type(choice) is int)):
            raise TypeError
    except (KeyError, TypeError):
        return json.dumps(own_result(you, note), separators=(",", ":")).encode()
    answer = b"null" if choice is None else _OWN_ANSWER % (
        question_id_json, choice, _JSON_BOOL[correct], you["points"])
    return _OWN % (_JSON_BOOL[correct], you["points"], you["score"], you["rank"], you["streak"], bonus,
                   _JSON_BOOL[answered], answer)


def own_result(you: dict[str, Any], note: dict[str, Any]) -> dict[str, Any]:
    """A player's part of a close: how it went and where it leaves them (the points include the streak
    bonus), and the answer as a snapshot shows it, so a page holds the same state either way."""
    own = {k: you[k] for k in ("correct", "points", "score", "rank", "streak")}
    own["streak_bonus"] = you.get("streak_bonus", 0)
    own["answered"] = you.get("answered", False)
    choice = you.get("choice")
    own["answer"] = None if choice is None else {
        "question_id": note.get("question_id"), "choice": choice, "correct": you["correct"],
        "points": you["points"]}
    return own


@dataclass
class Room:
    session_id: uuid.UUID
    stream_key: str
    last_id: str
    connections: set[Connection] = field(default_factory=set)
    dirty: bool = False
    only_joins: bool = False  # dirty, and only by joins: the ticker's longer interval (ticker.py)
    pushed_at: float = 0.0
    # Notifications read but not yet delivered, and whether a thread is delivering them.
    inbox: deque = field(default_factory=deque)
    delivering: bool = False


@dataclass
class RoomReads:
    """What the hub reads besides the stream; swapped for fakes in unit tests."""

    top: Callable[[uuid.UUID, int], dict[str, Any]]
    question_results: Callable[[uuid.UUID, uuid.UUID, list[uuid.UUID]], dict[uuid.UUID, dict[str, Any]]]
    # (what every socket's snapshot shares: session and leaderboard, {participant id: own standing})
    snapshot: Callable[[uuid.UUID, list[uuid.UUID]], tuple[dict[str, Any], dict[uuid.UUID, dict[str, Any]]]]


class RoomDelivery:
    """Delivers each room's notifications to its sockets, in order, a thread per room while it has any."""

    def __init__(self, reads: RoomReads, lock: threading.Lock, board_moved: threading.Event,
                 errors: RateLimitedLog) -> None:
        self.reads = reads
        self._lock = lock  # the hub's: it guards the rooms and their inboxes
        self.board_moved = board_moved  # wakes the ticker
        self._errors = errors
        self.clock: Callable[[], float] = time.monotonic  # the ticker's (hub.py): when a board went out

    def hand_over(self, room: Room, notes: list[dict[str, Any]]) -> None:
        """Queue `notes` for the room; start its delivering thread unless one is running."""
        with self._lock:
            room.inbox.extend(notes)
            if room.delivering:
                return
            room.delivering = True
        threading.Thread(target=self.deliver, args=(room,), name="room-deliver", daemon=True).start()

    def deliver(self, room: Room) -> None:
        while True:
            with self._lock:
                if not room.inbox:
                    room.delivering = False
                    return
                note = room.inbox.popleft()
            try:
                self.dispatch(room, note)
            except Exception:  # one bad notification must not stop the room
                log.exception("cannot deliver a room notification", extra={"session_id": room.session_id})

    def dispatch(self, room: Room, note: dict[str, Any]) -> None:
        kind = note.get("type")
        if kind == "board_rebuilt" and self._rebuilt_again(room):
            return  # a later rebuild is queued: its resync covers this one's
        if kind == "question_closed" and self._send_question_closed(room, note):
            self._pushed(room, note)
            return  # its frame carried the board as it is after the close
        self._notify(room, kind, note)
        self._pushed(room, note)
        if kind in BOARD_MOVES:  # after the notification itself
            room.only_joins = kind == "participant_joined" and (room.only_joins or not room.dirty)
            room.dirty = True
            self.board_moved.set()

    @staticmethod
    def _pushed(room: Room, note: dict[str, Any]) -> None:
        """The note's last hop (applied → pushed) timed, when it reached a socket of this process."""
        if room.connections:
            record_push(note, QUIZ_SESSION)

    def _rebuilt_again(self, room: Room) -> bool:
        with self._lock:
            return any(queued.get("type") == "board_rebuilt" for queued in room.inbox)

    def _notify(self, room: Room, kind: str | None, note: dict[str, Any]) -> None:
        # Each player_count is the board's when the worker applied the note: the same in every process.
        # Who joined, left or came back goes to the host only: players see the count on the room's board
        # (`player_count`), pushed at most once per interval (ticker.py), so a join costs one message,
        # not one per player (a lobby filling up would be O(players²)).
        if kind == "participant_joined":
            self.to_hosts(room, {"type": "player_joined", "nickname": note.get("nickname"),
                                 "participant_id": note.get("participant_id"),
                                 "player_count": int(note.get("player_count") or 0)})
        elif kind == "question_opened":
            question = {k: note.get(k) for k in ("question_id", "position", "kind", "text", "choices",
                                                 "image_url", "image_alt", "time_limit_s", "points",
                                                 "shown_at", "opened_at", "deadline", "question_count")}
            self.broadcast(room, {"type": "question_opened", **question, "server_time": now_iso()})
        elif kind == "answer_received":
            # The host sees how many have answered; players learn nothing of each other's answers.
            self.to_hosts(room, {"type": "answer_count", "question_id": note.get("question_id"),
                                 "answered": int(note.get("answered") or 0),
                                 "player_count": int(note.get("player_count") or 0)})
        elif kind == "participant_removed":
            for connection in list(room.connections):
                if str(connection.participant_id) == note.get("participant_id"):
                    connection.close_with(CLOSE_REMOVED, "the host removed you from this game")
            self.to_hosts(room, {"type": "player_removed", "participant_id": note.get("participant_id"),
                                 "player_count": int(note.get("player_count") or 0)})
        elif kind == "participant_restored":
            self.to_hosts(room, {"type": "player_restored", "participant_id": note.get("participant_id"),
                                 "nickname": note.get("nickname"),
                                 "player_count": int(note.get("player_count") or 0)})
        elif kind == "question_extended":
            # Everyone's timer moves: the deadline is the one PostgreSQL judges answers by.
            self.broadcast(room, {"type": "question_extended", "question_id": note.get("question_id"),
                                  "deadline": note.get("deadline"), "added_s": int(note.get("added_s") or 0),
                                  "server_time": now_iso()})
        elif kind == "session_deleted":
            for connection in list(room.connections):
                connection.close_with(CLOSE_DELETED, "the host deleted this game")
        elif kind == "socket_superseded":
            for connection in list(room.connections):
                if connection.id == note.get("connection_id"):
                    connection.close_with(CLOSE_SUPERSEDED,
                                          "replaced by a newer connection of the same player")
        elif kind == "board_rebuilt":
            self.resync(room, int(note.get("version") or 0))
        elif kind == "session_ended":
            try:
                podium = self.reads.top(room.session_id, PODIUM_SIZE)["entries"]
            except Exception as exc:  # the end still reaches the room; clients read the board later
                self._errors.warning("podium", "cannot read the podium: %s", exc)
                podium = None
            self.broadcast(room, {"type": "session_ended", "podium": podium})

    def _send_question_closed(self, room: Room, note: dict[str, Any]) -> bool:
        """One frame per socket for the close: the question's outcome and the board after it (encoded once
        for the room), and for a player its own result (the only part encoded per socket). Returns whether
        the board went with it; if it could not be read, the ticker pushes it after."""
        message: dict[str, Any] = {"type": "question_closed", **{k: note.get(k) for k in (
            "question_id", "position", "correct_choice", "choice_counts", "reason")}}
        connections = list(room.connections)
        players = [c.participant_id for c in connections if c.participant_id is not None]
        try:
            results = self.reads.question_results(room.session_id, uuid.UUID(str(note["question_id"])),
                                                  players)
        except Exception as exc:  # everyone still learns the question closed; their own result comes later
            self._errors.warning("results", "cannot read the players' results: %s", exc)
            results = {}
        try:
            board = self.reads.top(room.session_id, LEADERBOARD_SIZE)
            message["leaderboard"] = {**board, "player_count": board["total_players"]}
        except Exception as exc:  # the close still goes out; the board follows from the ticker
            self._errors.warning("leaderboard", "cannot read the board of a close: %s", exc)
            board = None
        shared = json.dumps(message, separators=(",", ":")).encode()
        shared_frame = payload_frame(shared)
        rest = shared[len(CLOSE_HEAD) - 1:]  # `,"question_id":...}`: what follows a player's own part
        head = CLOSE_HEAD + b'"you":'
        question_id_json = json.dumps(note.get("question_id")).encode()
        for connection in connections:
            you = results.get(connection.participant_id) if connection.is_player else None
            frame = shared_frame if you is None else payload_frame(
                head + own_result_bytes(you, note, question_id_json) + rest)
            if board is None:
                connection.offer("question_closed", frame)
            else:
                connection.offer_with_state("question_closed", frame, LEADERBOARD, board["version"])
        if board is not None:
            room.pushed_at = self.clock()  # the board just went out: the ticker's interval starts now
        return board is not None

    def resync(self, room: Room, rebuilt_version: int) -> None:
        """A board rebuilt from PostgreSQL covers events whose own notifications will never come: every
        socket of the room gets a fresh snapshot, queued behind what it was already sent. A socket
        whose snapshot or board is already as new as the rebuilt board has seen what it covers."""
        stale = [c for c in room.connections if c.leaderboard_version < rebuilt_version]
        if not stale:
            return
        try:
            for connection, version, text in self.snapshots(room.session_id, stale):
                connection.offer_resync(version, text)
        except Exception as exc:  # sockets keep their state; the next reconnect brings a snapshot anyway
            self._errors.warning("resync", "cannot resync a room after its board was rebuilt: %s", exc)

    def broadcast(self, room: Room, message: dict[str, Any]) -> None:
        text = json.dumps(message, separators=(",", ":"))
        for connection in list(room.connections):
            connection.offer(message["type"], text)

    def to_hosts(self, room: Room, message: dict[str, Any]) -> None:
        text = json.dumps(message, separators=(",", ":"))
        for connection in list(room.connections):
            if connection.is_host:
                connection.offer(message["type"], text)

    def snapshots(self, session_id: uuid.UUID,
                  connections: list[Connection]) -> list[tuple[Connection, int, str]]:
        """(connection, board version, snapshot text) for each of `connections`, from one read of the room."""
        players = [c.participant_id for c in connections if c.participant_id is not None]
        shared, standings = self.reads.snapshot(session_id, players)
        version = shared["leaderboard"]["version"]
        made = []
        for connection in connections:
            message = {"type": "snapshot", **shared, "role": "host" if connection.is_host else "player",
                       "server_time": now_iso()}
            if connection.participant_id is not None and connection.participant_id in standings:
                message["you"] = standings[connection.participant_id]
            made.append((connection, version, json.dumps(message, separators=(",", ":"))))
        return made
