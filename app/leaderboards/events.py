"""A leaderboard's events: their names, versions and payloads. Each carries the resulting state, never a
delta (a configuration's revision, an entry's version, a period's start), so any order of delivery
leaves the same board. Written with their change by the service (app/leaderboards/service/),
published keyed by the board's id, applied to the board in Redis (app/leaderboards/board/)."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from app.core.events import EventTypes, Payload

LEADERBOARD = "leaderboard"


class BoardConfigured(Payload):
    """A board's configuration as of `revision` (board_created, board_updated)."""
    revision: int
    name: str
    sort_order: Literal["asc", "desc"]
    update_mode: str
    reset_period: str
    max_entries: int | None


class BoardDeleted(Payload):
    deleted_at: datetime


class EntryChanged(Payload):
    period: str
    player_id: str
    score: int
    tie_seq: int
    version: int
    display_name: str | None
    reached_at: datetime
    metadata: dict[str, Any] | None = None  # the entry's (absent from events written before it was carried)


class EntryRemoved(Payload):
    period: str
    player_id: str
    version: int


class PeriodOpened(Payload):
    period: str
    starts_at: datetime
    ends_at: datetime | None


class Standing(Payload):
    rank: int
    player_id: str
    display_name: str | None
    score: int


class PeriodClosed(Payload):
    period: str
    closed_at: datetime
    entry_count: int
    top: list[Standing]  # the final top N, never the whole board: an event stays small
    # The period's bounds in the board's zone and its label, as every read shows them
    # (app/leaderboards/spans.py `period_span`); absent from events written before they were added.
    starts_at: str | None = None
    ends_at: str | None = None
    label: str | None = None


# (event type, version) -> payload schema. A new version is a new entry; old ones stay readable.
LEADERBOARD_EVENTS = EventTypes(LEADERBOARD, {
    ("board_created", 1): BoardConfigured,
    ("board_updated", 1): BoardConfigured,
    ("board_deleted", 1): BoardDeleted,
    ("entry_changed", 1): EntryChanged,
    ("entry_removed", 1): EntryRemoved,
    ("period_opened", 1): PeriodOpened,
    ("period_closed", 1): PeriodClosed,
})
