"""The per-process fan-out: one reader of the rooms' Redis streams for all of this process's sockets.

The cache worker appends a notification to `room:{S}` for every event it applies. Each web process
reads the streams of the rooms it has sockets in (one XREAD for all of them, not one per socket:
streams.py) and hands each notification to its room (room.py), which works through them in order on a
thread of its own. Leaderboard changes are coalesced: a room whose board moved is marked dirty, and the
ticker (ticker.py) reads its top 10 at most once per interval and pushes that newest state. The hub
keeps the rooms and live boards (leaderboards.py) this process has sockets in: who joins and leaves.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from app.core.logs import RateLimitedLog
from app.leaderboards.board.keys import LeaderboardKeys
from app.leaderboards.events import LEADERBOARD
from app.quiz.board.keys import SessionKeys
from app.quiz.board.scripts import session_board_scripts
from app.web.rooms.connection import Connection
from app.web.rooms.heartbeat import Heard, Heartbeat
from app.web.rooms.joins import JoinGate, JoinSnapshots
from app.web.rooms.journey import record_push
from app.web.rooms.leaderboards import LeaderboardChannel, LeaderboardReads, Watch
from app.web.rooms.room import Room, RoomDelivery, RoomReads
from app.web.rooms.streams import StreamReader, decode_notes
from app.web.rooms.ticker import LeaderboardTicker

log = logging.getLogger(__name__)

# A session's presence set outlives its last write by this long (then the game is long over).
PRESENCE_TTL_S = 86400


class RoomHub:
    def __init__(self, redis_client: redis.Redis, reads: RoomReads, *, interval_s: float,
                 count_interval_s: float | None = None,
                 metrics: Any | None = None, board_reads: LeaderboardReads | None = None,
                 ping_interval_s: float = 5.0, silent_close_s: float = 15.0, joins_in_flight: int = 32,
                 join_wait_s: float = 30.0):
        self.redis = redis_client
        self.reads = reads
        self.board_reads = board_reads
        self.interval_s = interval_s
        self.metrics = metrics
        self.rooms: dict[uuid.UUID, Room] = {}
        # Live boards (leaderboards.py) watched by this process's sockets.
        self.boards: dict[str, LeaderboardChannel] = {}
        self._lock = threading.Lock()
        self._started = False
        self._stopping = threading.Event()
        self._errors = RateLimitedLog(log)
        self._board_moved = threading.Event()
        self._reader = StreamReader(redis_client, self._streams, self._take, self._stopping, self._errors)
        self.delivery = RoomDelivery(reads, self._lock, self._board_moved, self._errors)
        # Unset: a board only joins moved goes out at the leaderboard's own pace.
        counts_s = interval_s if count_interval_s is None else count_interval_s
        self.ticker = LeaderboardTicker(reads, board_reads, interval_s=interval_s, count_interval_s=counts_s,
                                        dirty=self._dirty, moved=self._board_moved, stopping=self._stopping,
                                        errors=self._errors)
        self.joins = JoinSnapshots(self.delivery.snapshots)
        self.join_gate = JoinGate(joins_in_flight, join_wait_s)
        self.delivery.clock = lambda: self.ticker.clock()  # one clock for the interval of a room's pushes
        self.heartbeat = Heartbeat(interval_s=ping_interval_s, silent_close_s=silent_close_s,
                                   stopping=self._stopping, errors=self._errors, present=self.mark_present)

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
        if connection.participant_id is not None:
            self.mark_present({connection.session_id: {connection.participant_id: int(time.time() * 1000)}})

    # --- presence: is a player's seat in use? ----------------------------------------------------

    def mark_present(self, heard: Heard) -> None:
        """Note when each player was last heard (one write per room); every process reads it."""
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                for session_id, players in heard.items():
                    key = SessionKeys.of(session_id).presence
                    pipe.zadd(key, {str(p): at for p, at in players.items()}, gt=True)
                    pipe.expire(key, PRESENCE_TTL_S)
                pipe.execute()
        except redis.RedisError as exc:  # a seat looks free a little early at worst
            self._errors.warning("presence", "cannot note who is connected: %s", exc)

    def present(self, session_id: uuid.UUID) -> set[str] | None:
        """The players of the session heard on a room socket within WS_SILENT_CLOSE_S, in any process
        (participant ids); None when Redis cannot tell now."""
        since_ms = int((time.time() - self.heartbeat.silent_close_s) * 1000)
        try:
            heard = self.redis.zrangebyscore(SessionKeys.of(session_id).presence, since_ms, "+inf")
        except redis.RedisError as exc:
            self._errors.warning("presence", "cannot read who is connected: %s", exc)
            return None
        return {p.decode() if isinstance(p, bytes) else p for p in heard}

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
            keys = SessionKeys.of(connection.session_id)
            try:
                self.redis.zrem(keys.sockets(user_id), connection.id)
                if connection.participant_id is not None and not self.redis.zcard(keys.sockets(user_id)):
                    self.redis.zrem(keys.presence, str(connection.participant_id))  # closed: the seat is free
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
            threading.Thread(target=self.ticker.run, name="room-leaderboards", daemon=True).start()
            threading.Thread(target=self.heartbeat.run, name="socket-heartbeat", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()

    def snapshot(self, connection: Connection) -> tuple[int, str]:
        """(board version, snapshot text) of a socket that joined its room, read with the room's other
        joins waiting at the same time (joins.py)."""
        return self.joins.snapshot(connection.session_id, connection)

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
                    self.delivery.hand_over(room, notes)
            board = self._board_by_stream(key)
            if board is not None:
                board.last_id = entries[-1][0].decode()
                # Notes of a board only mark it dirty or forward what they carry: no read here.
                moved = [board.note(note) for note in notes]
                if board.watches:
                    for note in notes:
                        record_push(note, LEADERBOARD)
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

    def _dirty(self) -> list[Room | LeaderboardChannel]:
        with self._lock:
            dirty: list[Room | LeaderboardChannel] = [room for room in self.rooms.values() if room.dirty]
            dirty += [board for board in self.boards.values() if board.dirty]
        return dirty
