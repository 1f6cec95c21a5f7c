"""How a board's period is shown: `starts_at` and `ends_at` in the board's zone (ISO 8601 with the offset)
and a `label`, by `period_span`, the one owner of that rule; and the spans a process has read
(`PeriodSpans`), which every read and the change feed show."""
from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from datetime import timezone as fixed_offset
from typing import Any

from sqlalchemy import Engine, text

from app.core.errors import NotFound

SPAN_FIELDS = ("starts_at", "ends_at", "label")
# A closed period's `total` went by this name in GET .../periods and the board sockets' period_closed:
# still sent beside it until the release after next (docs/leaderboards.md, Live boards).
DEPRECATED_ENTRY_COUNT = "entry_count"
# What period_span reads of a period `p` of a board `b`: the zone's arithmetic stays PostgreSQL's (it
# decided the period), so its local times come from the same time zone database.
SPAN_COLUMNS = """p.period, b.reset_period, p.starts_at, p.ends_at,
    p.starts_at AT TIME ZONE b.timezone AS starts_local, p.ends_at AT TIME ZONE b.timezone AS ends_local"""


def _in_zone(instant: datetime, local: datetime) -> datetime:
    """`local` (the board's wall clock at `instant`) with its UTC offset."""
    offset = local - instant.astimezone(UTC).replace(tzinfo=None)
    return local.replace(tzinfo=fixed_offset(offset))


def _utc_offset(moment: datetime) -> str:
    offset = moment.utcoffset() or timedelta(0)
    if not offset:
        return "UTC"
    minutes = int(offset.total_seconds()) // 60
    return f"UTC{'+' if minutes > 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _day(moment: datetime) -> str:
    return f"{moment:%a} {moment.day} {moment:%b %Y}"


def period_span(row: Any) -> dict[str, Any]:
    """{starts_at, ends_at, label} of a period row of SPAN_COLUMNS: its bounds in the board's zone, and
    how a person names it there (`Sun 6 Dec 2026, 19:00–20:00 UTC+05:45`, `Week 49 of 2026, 30 Nov –
    6 Dec`, `December 2026`, `All time`; a reset's period adds when it began)."""
    start = _in_zone(row.starts_at, row.starts_local)
    end = None if row.ends_at is None else _in_zone(row.ends_at, row.ends_local)
    if row.reset_period == "hourly" and end is not None:
        if end.utcoffset() == start.utcoffset():
            label = f"{_day(start)}, {start:%H:%M}–{end:%H:%M} {_utc_offset(start)}"
        else:  # the clocks changed within it
            label = f"{_day(start)}, {start:%H:%M} {_utc_offset(start)} – {end:%H:%M} {_utc_offset(end)}"
    elif row.reset_period == "daily":
        label = _day(start)
    elif row.reset_period == "weekly" and end is not None:
        year, week, _ = start.isocalendar()
        monday, sunday = start - timedelta(days=start.weekday()), end - timedelta(days=1)
        label = f"Week {week} of {year}, {monday.day} {monday:%b} – {sunday.day} {sunday:%b}"
    elif row.reset_period == "monthly":
        label = f"{start:%B %Y}"
    else:
        label = "All time"
    if "~" in row.period and row.reset_period != "hourly":  # opened by a reset, not at the unit's start
        label += f", from {start.day} {start:%b %H:%M} {_utc_offset(start)}"
    return {"starts_at": start.isoformat(), "ends_at": None if end is None else end.isoformat(),
            "label": label}


def with_span(view: dict[str, Any], span: dict[str, Any]) -> dict[str, Any]:
    """`view` with its period's starts_at, ends_at and label right after `period`."""
    shown: dict[str, Any] = {}
    for key, value in view.items():
        shown[key] = value
        if key == "period":
            shown.update(span)
    return shown


class PeriodSpans:
    """The spans of the periods a process shows, read from PostgreSQL once each: a period's bounds and its
    board's zone never change. Bounded (least recently used go first)."""

    def __init__(self, engine: Engine, size: int = 4096):
        self.engine, self.size = engine, size
        self._known: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, board_id: str, period: str) -> dict[str, Any]:
        """The span of a board's period; 404 when there is no such period."""
        with self._lock:
            span = self._known.get((board_id, period))
            if span is not None:
                self._known.move_to_end((board_id, period))
                return span
        with self.engine.connect() as connection:
            row = connection.execute(text(
                f"SELECT {SPAN_COLUMNS} FROM leaderboard_periods p "
                "JOIN leaderboards b ON b.id = p.leaderboard_id "
                "WHERE p.leaderboard_id = :b AND p.period = :p"), {"b": board_id, "p": period}).one_or_none()
        if row is None:
            raise NotFound("not_found", "no such board or period")
        span = period_span(row)
        with self._lock:
            self._known[(board_id, period)] = span
            while len(self._known) > self.size:
                self._known.popitem(last=False)
        return span
