"""The per-process fan-out: one reader of the rooms' Redis streams for all of this process's sockets.

The cache worker appends a notification to `room:{S}` for every event it applies. Each web process
reads the streams of the rooms it has sockets in (one XREAD for all of them, not one per socket:
streams.py) and hands each notification to its room. A room works through its notifications in order
on a thread of its own while it has any (the close of a question reads every player's result from
PostgreSQL), so one slow query delays that room only, never the reader or another room. Leaderboard changes are
coalesced: a room whose board moved is marked dirty, and a ticker reads its top 10 at most once per
interval and pushes that newest state. Rooms never share a message: each message is built from, and
sent to, a single room.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import redis

from app.core.logs import RateLimitedLog
from app.leaderboards.board.keys import LeaderboardKeys
from app.quiz.board.keys import SessionKeys
from app.quiz.board.scripts import session_board_scripts
from app.web.rooms.connection import CLOSE_SUPERSEDED, Connection
from app.web.rooms.leaderboards import LeaderboardChannel, LeaderboardReads, Watch
from app.web.rooms.streams import StreamReader, decode_notes

log = logging.getLogger(__name__)

LEADERBOARD_SIZE = 10
PODIUM_SIZE = 5
# Notifications after which the room's board shows something new. An answer to an open question
# (`answer_received`) moves nothing: its points stay hidden until the question closes.
BOARD_MOVES = {"answer_scored", "participant_joined", "question_closed", "participant_removed"}
CLOSE_REMOVED = 4403
CLOSE_DELETED = 4404


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass
class Room:
    session_id: uuid.UUID
    stream_key: str
    last_id: str
    connections: set[Connection] = field(default_factory=set)
    dirty: bool = False
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


class RoomHub:
    def __init__(self, redis_client: redis.Redis, reads: RoomReads, *, interval_s: float,
                 metrics: Any | None = None, board_reads: LeaderboardReads | None = None):
        self.redis = redis_client
        self.reads = reads
        self.board_reads = board_reads
        self.interval_s = interval_s
        self.metrics = metrics
        self.rooms: dict[uuid.UUID, Room] = {}
        self.boards: dict[str, LeaderboardChannel] = {}  # live boards (boards.py) watched by this process's sockets
        self._lock = threading.Lock()
        self._started = False
        self._stopping = threading.Event()
        self._errors = RateLimitedLog(log)
        self._board_moved = threading.Event()
        self._reader = StreamReader(redis_client, self._streams, self._take, self._stopping, self._errors)

    # --- membership -----------------------------------------------------------------------------

    def stream_tail(self, session_id: uuid.UUID) -> str:
        """The id of the room's newest notification; read before a snapshot so nothing falls between."""
        newest = self.redis.xrevrange(SessionKeys.of(session_id).room, count=1)
        return newest[0][0].decode() if newest else "0-0"

    def join(self, connection: Connection, tail: str) -> None:
        with self._lock:
            room = self.rooms.get(connection.session_id)
            if room is None:
                room = Room(connection.session_id, SessionKeys.of(connection.session_id).room, tail)
                self.rooms[connection.session_id] = room
            room.connections.add(connection)
            self._start()
        if self.metrics:
            self.metrics.ws_connections.inc()

    def register(self, connection: Connection, user_id: uuid.UUID, allowed: int) -> None:
        """Count this socket among its user's in the room; the oldest beyond `allowed` are closed
        (4409) by whichever process holds them, so a reload or a second device always gets in."""
        keys = SessionKeys.of(connection.session_id)
        session_board_scripts(self.redis).register_room_socket(
            [keys.sockets(user_id), keys.room], [connection.id, int(time.time() * 1000), allowed])

    def supersede(self, session_id: uuid.UUID, user_id: uuid.UUID) -> None:
        """Close the room sockets of `user_id` (4409), in whichever process holds them: their place moved
        to another device."""
        keys = SessionKeys.of(session_id)
        try:
            for connection_id in self.redis.zrange(keys.sockets(user_id), 0, -1):
                self.redis.xadd(keys.room, {"type": "socket_superseded", "connection_id": connection_id},
                                maxlen=1000, approximate=True)
            self.redis.delete(keys.sockets(user_id))
        except redis.RedisError as exc:  # the old device learns at its next reconnect instead
            self._errors.warning("supersede", "cannot close the sockets of a place that moved: %s", exc)

    def leave(self, connection: Connection, user_id: uuid.UUID | None = None) -> None:
        connection.close()
        if user_id is not None:
            try:
                self.redis.zrem(SessionKeys.of(connection.session_id).sockets(user_id), connection.id)
            except redis.RedisError:  # the entry is superseded harmlessly later
                pass
        with self._lock:
            room = self.rooms.get(connection.session_id)
            if room is not None:
                room.connections.discard(connection)
                if not room.connections:
                    del self.rooms[connection.session_id]
        if self.metrics:
            self.metrics.ws_connections.dec()

    # --- live boards ----------------------------------------------------------------------------

    def board_tail(self, board_id: str) -> str:
        newest = self.redis.xrevrange(LeaderboardKeys(board_id).room, count=1)
        return newest[0][0].decode() if newest else "0-0"

    def watch(self, watch: Watch, tail: str) -> None:
        """Start pushing the board to `watch`; read the tail first, then `show` it its first state."""
        with self._lock:
            channel = self.boards.get(watch.board_id)
            if channel is None:
                channel = LeaderboardChannel(watch.board_id, LeaderboardKeys(watch.board_id).room, tail)
                self.boards[watch.board_id] = channel
            channel.watches.add(watch)
            self._start()

    def show(self, watch: Watch) -> None:
        """The board as it is now, at once (a socket's first state), whatever the interval."""
        channel = self.boards.get(watch.board_id)
        if channel is not None:
            channel.push(self.board_reads, [watch])

    def unwatch(self, watch: Watch) -> None:
        with self._lock:
            channel = self.boards.get(watch.board_id)
            if channel is not None:
                channel.watches.discard(watch)
                if not channel.watches:
                    del self.boards[watch.board_id]

    def follow(self, stream_key: str, deliver: Callable[[list[dict[str, Any]]], None]) -> None:
        """Read `stream_key` with the rooms' streams for as long as the process lives (streams.py, Feed)."""
        self._reader.follow(stream_key, deliver)
        with self._lock:
            self._start()

    def _start(self) -> None:
        if not self._started:
            self._started = True
            self._reader.start()
            threading.Thread(target=self._push_leaderboards, name="room-leaderboards", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()

    # --- sending --------------------------------------------------------------------------------

    def broadcast(self, room: Room, message: dict[str, Any]) -> None:
        text = json.dumps(message, separators=(",", ":"))
        for connection in list(room.connections):
            connection.offer(message["type"], text)

    def snapshots(self, session_id: uuid.UUID, connections: list[Connection]) -> list[tuple[Connection, int, str]]:
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

    # --- the stream reader ----------------------------------------------------------------------

    def _streams(self) -> dict[str, str]:
        """{stream key: id of the last entry read} of every room and board with a socket here."""
        with self._lock:
            streams = {room.stream_key: room.last_id for room in self.rooms.values()}
            streams.update({board.stream_key: board.last_id for board in self.boards.values()})
        return streams

    def _take(self, batches) -> None:
        """Hand what one XREAD returned to its rooms and boards."""
        for stream_key, entries in batches or []:
            key = stream_key.decode()
            notes = decode_notes(key, entries, self._errors)
            room = self._room_by_stream(key)
            if room is not None:
                room.last_id = entries[-1][0].decode()
                if notes:
                    self._hand_over(room, notes)
            board = self._board_by_stream(key)
            if board is not None:
                board.last_id = entries[-1][0].decode()
                # Notes of a board only mark it dirty or forward what they carry: no read here.
                moved = [board.note(note) for note in notes]
                if any(moved):
                    board.dirty = True
                    self._board_moved.set()

    def _room_by_stream(self, stream_key: str) -> Room | None:
        with self._lock:
            for room in self.rooms.values():
                if room.stream_key == stream_key:
                    return room
        return None

    def _board_by_stream(self, stream_key: str) -> LeaderboardChannel | None:
        with self._lock:
            for board in self.boards.values():
                if board.stream_key == stream_key:
                    return board
        return None

    def _hand_over(self, room: Room, notes: list[dict[str, Any]]) -> None:
        """Queue `notes` for the room; start its delivering thread unless one is running."""
        with self._lock:
            room.inbox.extend(notes)
            if room.delivering:
                return
            room.delivering = True
        threading.Thread(target=self._deliver, args=(room,), name="room-deliver", daemon=True).start()

    def _deliver(self, room: Room) -> None:
        while True:
            with self._lock:
                if not room.inbox:
                    room.delivering = False
                    return
                note = room.inbox.popleft()
            try:
                self._dispatch(room, note)
            except Exception:  # one bad notification must not stop the room
                log.exception("cannot deliver a room notification", extra={"session_id": room.session_id})

    def _dispatch(self, room: Room, note: dict[str, Any]) -> None:
        kind = note.get("type")
        if kind == "board_rebuilt" and self._rebuilt_again(room):
            return  # a later rebuild is queued: its resync covers this one's
        self._notify(room, kind, note)
        if kind in BOARD_MOVES:  # after the notification itself: a close's result comes before its board
            room.dirty = True
            self._board_moved.set()

    def _rebuilt_again(self, room: Room) -> bool:
        with self._lock:
            return any(queued.get("type") == "board_rebuilt" for queued in room.inbox)

    def _notify(self, room: Room, kind: str | None, note: dict[str, Any]) -> None:
        # Each player_count is the board's when the worker applied the note: the same in every process.
        if kind == "participant_joined":
            self.broadcast(room, {"type": "player_joined", "nickname": note.get("nickname"),
                                  "participant_id": note.get("participant_id"),
                                  "player_count": int(note.get("player_count") or 0)})
        elif kind == "question_opened":
            question = {k: note.get(k) for k in ("question_id", "position", "kind", "text", "choices", "image_url",
                                                 "time_limit_s", "points", "shown_at", "opened_at", "deadline",
                                                 "question_count")}
            self.broadcast(room, {"type": "question_opened", **question, "server_time": now_iso()})
        elif kind == "question_closed":
            self._send_question_closed(room, note)
        elif kind == "answer_received":
            # The host sees how many have answered; players learn nothing of each other's answers.
            message = json.dumps({"type": "answer_count", "question_id": note.get("question_id"),
                                  "answered": int(note.get("answered") or 0),
                                  "player_count": int(note.get("player_count") or 0)},
                                 separators=(",", ":"))
            for connection in list(room.connections):
                if connection.is_host:
                    connection.offer("answer_count", message)
        elif kind == "participant_removed":
            for connection in list(room.connections):
                if str(connection.participant_id) == note.get("participant_id"):
                    connection.close_with(CLOSE_REMOVED, "the host removed you from this game")
            self.broadcast(room, {"type": "player_removed", "participant_id": note.get("participant_id"),
                                  "player_count": int(note.get("player_count") or 0)})
        elif kind == "session_deleted":
            for connection in list(room.connections):
                connection.close_with(CLOSE_DELETED, "the host deleted this game")
        elif kind == "socket_superseded":
            for connection in list(room.connections):
                if connection.id == note.get("connection_id"):
                    connection.close_with(CLOSE_SUPERSEDED, "replaced by a newer connection of the same player")
        elif kind == "board_rebuilt":
            self._resync(room, int(note.get("version") or 0))
        elif kind == "session_ended":
            try:
                podium = self.reads.top(room.session_id, PODIUM_SIZE)["entries"]
            except Exception as exc:  # the end still reaches the room; clients read the board later
                self._errors.warning("podium", "cannot read the podium: %s", exc)
                podium = None
            self.broadcast(room, {"type": "session_ended", "podium": podium})

    def _send_question_closed(self, room: Room, note: dict[str, Any]) -> None:
        message = {"type": "question_closed", **{k: note.get(k) for k in (
            "question_id", "position", "correct_choice", "choice_counts", "reason")}}
        connections = list(room.connections)
        players = [c.participant_id for c in connections if c.participant_id is not None]
        try:
            results = self.reads.question_results(room.session_id, uuid.UUID(str(note["question_id"])), players)
        except Exception as exc:  # everyone still learns the question closed; their own result comes later
            self._errors.warning("results", "cannot read the players' results: %s", exc)
            results = {}
        shared = json.dumps(message, separators=(",", ":"))
        # A player's copy is the shared message plus its own result: only that part is encoded per socket.
        personal = shared[:-1] + ',"you":'
        for connection in connections:
            you = results.get(connection.participant_id) if connection.is_player else None
            if you is None:
                connection.offer("question_closed", shared)
            else:
                own = {k: you[k] for k in ("correct", "points", "score", "rank", "streak")}
                connection.offer("question_closed", personal + json.dumps(own, separators=(",", ":")) + "}")

    def _resync(self, room: Room, rebuilt_version: int) -> None:
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

    # --- coalesced leaderboards -----------------------------------------------------------------

    def _push_leaderboards(self) -> None:
        """Push a moved board at once if the room had no push in the last interval, else as soon as
        the interval is up (leading-edge throttle): still at most one push per interval per room,
        but a change no longer waits for the next tick of a fixed clock."""
        next_wait = self.interval_s
        while not self._stopping.is_set():
            self._board_moved.wait(next_wait)
            self._board_moved.clear()
            now = time.monotonic()
            with self._lock:
                dirty = [room for room in self.rooms.values() if room.dirty]
                dirty += [board for board in self.boards.values() if board.dirty]
            for room in dirty:
                if now - room.pushed_at < self.interval_s:
                    continue  # pushed less than an interval ago: its turn comes below
                room.dirty = False
                room.pushed_at = now
                try:
                    self._push(room)
                except Exception as exc:  # Redis away: try again next tick
                    room.dirty = True
                    self._errors.warning("leaderboard", "cannot read a leaderboard: %s", exc)
            # Wake when the first throttled room is due, or at the next change.
            waiting = [room.pushed_at + self.interval_s - time.monotonic() for room in dirty if room.dirty]
            next_wait = max(0.001, min(waiting)) if waiting else self.interval_s

    def _push(self, room: Room | LeaderboardChannel) -> None:
        if isinstance(room, LeaderboardChannel):
            room.push(self.board_reads)
            return
        board = self.reads.top(room.session_id, LEADERBOARD_SIZE)
        text = json.dumps({"type": "leaderboard", **board}, separators=(",", ":"))
        for connection in list(room.connections):
            connection.offer_leaderboard(board["version"], text)

