"""Live boards: sockets watching a leaderboard, pushed to only when what they watch changed.

A socket watches a board's top N (and, optionally, one player's standing). The cache worker appends a
notification to the board's stream `lbroom:{b:ID}` for every change it applies; the hub (hub.py) reads
it with the rooms' streams, in the same XREAD, and marks the board dirty. At most once per interval
(leading edge, as rooms), the hub reads the board once, at the largest N its sockets watch, and each
socket gets a `leaderboard_update` only if its own top N, or the board's player count, differs from
the one it was last sent: a write below the top N that brings no new player moves nothing on it. A
watched player's `standing` is pushed the same way.

Versions never go back on a socket: each board period is its own kind of message on a connection
(connection.py, `offer_latest`), so a newer state replaces a queued older one and an older one is
never sent. A period that closes sends its final standings (from the event, never a read) and moves
the socket to the next period.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.leaderboards.spans import DEPRECATED_ENTRY_COUNT, SPAN_FIELDS
from app.web.rooms.connection import Connection

UPDATE = "leaderboard_update"
STANDING = "standing"
PERIOD_CLOSED = "period_closed"
BOARD_DELETED = "leaderboard_deleted"
MAX_TOP = 100
# leaderboard_update's `total` went by this name: still sent beside it until the release after next
# (docs/leaderboards.md, Live boards).
DEPRECATED_TOTAL_PLAYERS = "total_players"


def _json(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


@dataclass(eq=False)
class Watch:
    """One socket's view of one board."""

    connection: Connection
    board_id: str
    top: int = 10
    player_id: str | None = None
    sent_top: tuple | None = None  # (period, total, entries) last sent
    sent_standing: tuple | None = None


@dataclass
class LeaderboardReads:
    """What the hub reads of a board; swapped for fakes in unit tests.

    top(board, period or None, n) -> {period, starts_at, ends_at, label, version, total, entries}
    standing(board, period, player) -> {rank, score, top_percent, ...} or None when the player is absent."""

    top: Callable[[str, str | None, int], dict[str, Any]]
    standing: Callable[[str, str, str], dict[str, Any] | None]


@dataclass(eq=False)
class LeaderboardChannel:
    board_id: str
    stream_key: str
    last_id: str
    watches: set[Watch] = field(default_factory=set)
    period: str | None = None  # the current period, once a notification or a read told it
    dirty: bool = False
    pushed_at: float = 0.0

    def note(self, note: dict[str, Any]) -> bool:
        """Take one notification of the board's stream; True when the board must be read again."""
        kind = note.get("type")
        if kind == "period_opened":
            self.period = note.get("period") or self.period
            for watch in self.watches:
                watch.sent_top = watch.sent_standing = None  # the new period's first state is always news
            return True
        if kind == "period_closed":
            message = _json({"type": PERIOD_CLOSED, "leaderboard_id": self.board_id,
                             "period": note.get("period"),
                             **{k: note.get(k) for k in SPAN_FIELDS},  # null in events older than them
                             "total": note.get("entry_count"), "entries": note.get("top") or [],
                             DEPRECATED_ENTRY_COUNT: note.get("entry_count")})
            for watch in list(self.watches):
                watch.connection.offer(PERIOD_CLOSED, message)
            return True
        if kind == "board_deleted":
            message = _json({"type": BOARD_DELETED, "leaderboard_id": self.board_id})
            for watch in list(self.watches):
                watch.connection.offer(BOARD_DELETED, message)
            return False
        return kind in ("board_changed", "board_rebuilt", "board_configured")

    def push(self, reads: LeaderboardReads, watches: list[Watch] | None = None) -> None:
        """Read the board once and offer each watch (all of them, or `watches`) what changed for it."""
        watches = list(self.watches) if watches is None else watches
        if not watches:
            return
        board = reads.top(self.board_id, self.period, max(w.top for w in watches))
        if self.period is None:  # a period_opened note, read meanwhile, is newer than this read
            self.period = board["period"]
        standings: dict[str, Any] = {}
        for player in {w.player_id for w in watches if w.player_id is not None}:
            standings[player] = reads.standing(self.board_id, board["period"], player)
        views: dict[int, TopView] = {}  # one message per size of top watched, shared by its watchers
        for watch in watches:
            view = views.get(watch.top)
            if view is None:
                view = views[watch.top] = top_view(self.board_id, board, watch.top)
            offer_update(watch, board["version"], view)
            if watch.player_id is not None:
                offer_standing(watch, board, standings[watch.player_id])


def span_of(board: dict[str, Any]) -> dict[str, Any]:
    """The starts_at, ends_at and label of the period a read showed."""
    return {k: board[k] for k in SPAN_FIELDS}


def _kind(kind: str, board_id: str, period: str) -> str:
    return f"{kind}:{board_id}:{period}"


@dataclass(frozen=True)
class TopView:
    """A board's top N as its watchers are sent it: what it shows (to compare), its kind and its text."""

    shown: tuple
    kind: str
    text: str


def top_view(board_id: str, board: dict[str, Any], top: int) -> TopView:
    entries = board["entries"][:top]
    shown = (board["period"], board["total"],
             tuple((e["player_id"], e["score"], e.get("display_name")) for e in entries))
    return TopView(shown, _kind(UPDATE, board_id, board["period"]), _json({
        "type": UPDATE, "leaderboard_id": board_id, "period": board["period"], **span_of(board),
        "version": board["version"], "entries": entries, "total": board["total"],
        DEPRECATED_TOTAL_PLAYERS: board["total"]}))


def offer_update(watch: Watch, version: int, view: TopView) -> bool:
    if view.shown == watch.sent_top:
        return False
    if watch.connection.offer_latest(view.kind, version, view.text):
        watch.sent_top = view.shown
        return True
    return False


def offer_standing(watch: Watch, board: dict[str, Any], standing: dict[str, Any] | None) -> bool:
    shown = (board["period"], None if standing is None else (standing["rank"], standing["score"]))
    if shown == watch.sent_standing:
        return False
    message = {"type": STANDING, "leaderboard_id": watch.board_id, "period": board["period"],
               **span_of(board), "version": board["version"], "player_id": watch.player_id,
               **({"rank": None, "score": None, "top_percent": None} if standing is None else {
                   k: standing[k] for k in ("rank", "score", "top_percent")})}
    if watch.connection.offer_latest(_kind(STANDING, watch.board_id, board["period"]), board["version"],
                                     _json(message)):
        watch.sent_standing = shown
        return True
    return False
