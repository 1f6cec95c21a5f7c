"""Coalesced leaderboards: a room (or live board) whose board moved is marked dirty, and the ticker reads its
top at most once per interval and pushes that newest state to its sockets.

A room whose board only joins moved since its last push (a lobby filling up: the count, and maybe a new
name at 0 points) waits the longer JOIN_COUNT_INTERVAL_MS: a 1,000-player lobby filling over 30 s was
sent 10 pushes a second to every socket (up to 145 frames per player), and a count read at a glance needs
no more than one a second. The host hears each join at once (room.py), and any other move (a removal, a
close) keeps the room's own pace."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

from app.core.logs import RateLimitedLog
from app.web.rooms.leaderboards import LeaderboardChannel, LeaderboardReads
from app.web.rooms.room import LEADERBOARD_SIZE, Room, RoomReads


class LeaderboardTicker:
    def __init__(self, reads: RoomReads, board_reads: LeaderboardReads | None, *, interval_s: float,
                 count_interval_s: float, dirty: Callable[[], list[Room | LeaderboardChannel]],
                 moved: threading.Event,
                 stopping: threading.Event, errors: RateLimitedLog) -> None:
        self.reads = reads
        self.board_reads = board_reads
        self.interval_s = interval_s
        self.count_interval_s = count_interval_s
        self.dirty = dirty  # the rooms and live boards marked dirty (the hub's)
        self.moved = moved  # set when a board moved: the ticker wakes
        self._stopping = stopping
        self._errors = errors
        self.clock: Callable[[], float] = time.monotonic

    def run(self) -> None:
        """Push a moved board at once if the room had no push in the last interval, else as soon as
        the interval is up (leading-edge throttle): still at most one push per interval per room,
        but a change no longer waits for the next tick of a fixed clock."""
        next_wait = self.interval_s
        while not self._stopping.is_set():
            self.moved.wait(next_wait)
            self.moved.clear()
            next_wait = self.tick()

    def tick(self) -> float:
        """One round: push each dirty room (or live board) whose interval is up; returns how long until
        the first one still throttled is due, or a whole interval when none is."""
        now = self.clock()
        dirty = self.dirty()
        for room in dirty:
            if now - room.pushed_at < self.interval_of(room):
                continue  # pushed less than an interval ago: its turn comes below
            room.dirty = False
            room.pushed_at = now
            try:
                self.push(room)
            except Exception as exc:  # Redis away: try again next tick
                room.dirty = True
                self._errors.warning("leaderboard", "cannot read a leaderboard: %s", exc)
        # Wake when the first throttled room is due, or at the next change.
        waiting = [room.pushed_at + self.interval_of(room) - self.clock() for room in dirty if room.dirty]
        return max(0.001, min(waiting)) if waiting else self.interval_s

    def interval_of(self, room: Room | LeaderboardChannel) -> float:
        """The least time between two pushes of `room`: longer while only joins moved its board."""
        return self.count_interval_s if isinstance(room, Room) and room.only_joins else self.interval_s

    def push(self, room: Room | LeaderboardChannel) -> None:
        if isinstance(room, LeaderboardChannel):
            room.push(self.board_reads)
            return
        board = self.reads.top(room.session_id, LEADERBOARD_SIZE)
        # `player_count` is how players of the room learn who joined: once per interval, not once per join.
        text = json.dumps({"type": "leaderboard", **board, "player_count": board["total_players"]},
                          separators=(",", ":"))
        for connection in list(room.connections):
            connection.offer_leaderboard(board["version"], text)
