"""A board's periods: decided by PostgreSQL's clock in the board's time zone, closed exactly once.

A score write locks its board's open period FOR KEY SHARE (writes run side by side) and is counted in
that period; closing takes the same row FOR UPDATE, so it waits for the writes in flight and no write
lands in a closed period. A write that finds its period already ended leaves it to `roll_period` and
tries again in the next one. Periods close at their boundary even when nobody writes: every web
process's timer calls `close_due_periods`, and the row lock makes each close happen once.

A closed period keeps its entries (readable with ?period=); its event carries the final top N and the
entry count, never the whole board.

A period's id names its calendar unit: `all` (never reset), `2026-12-06` (daily), `2026-W49`
(weekly, ISO), `2026-12` (monthly), all in the board's time zone; hourly, `2026-12-06T13Z`, the UTC
date and hour in which the period starts (in a zone whose offset is not whole hours the hour runs
from :15, :30 or :45 of it). A reset's period is suffixed `~2`, `~3`... Every read of a period shows
it with `starts_at` and `ends_at` in the board's zone (ISO 8601 with the offset) and a `label`, by
`period_span`, the one owner of that rule.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from datetime import timezone as fixed_offset
from typing import Any

from sqlalchemy import Connection, Engine, text

from app.core.errors import NotFound
from app.core.outbox import record_event
from app.events import PeriodClosed, PeriodOpened, Standing
from app.leaderboards.domain import ranking_sql

SPAN_FIELDS = ("starts_at", "ends_at", "label")
# A closed period's `total` went by this name in GET .../periods and the board sockets' period_closed:
# still sent beside it until the release after next (README, Live boards).
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
    return {"starts_at": start.isoformat(), "ends_at": None if end is None else end.isoformat(), "label": label}


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
                f"SELECT {SPAN_COLUMNS} FROM leaderboard_periods p JOIN leaderboards b ON b.id = p.leaderboard_id "
                "WHERE p.leaderboard_id = :b AND p.period = :p"), {"b": board_id, "p": period}).one_or_none()
        if row is None:
            raise NotFound("not_found", "no such board or period")
        span = period_span(row)
        with self._lock:
            self._known[(board_id, period)] = span
            while len(self._known) > self.size:
                self._known.popitem(last=False)
        return span

# The open period of each board, locked for writing: the write is counted in it unless it has ended.
_LOCK_OPEN = text("""
    SELECT b.id, b.sort_order, b.update_mode, b.max_entries, b.owner_id, b.self_report_max, p.period,
           p.ends_at, p.ends_at IS NOT NULL AND p.ends_at <= clock_timestamp() AS ended
    FROM leaderboards b JOIN leaderboard_periods p ON p.leaderboard_id = b.id AND p.closed_at IS NULL
    WHERE b.id = ANY(:boards) AND b.deleted_at IS NULL
    ORDER BY b.id
    FOR KEY SHARE OF p""")


def lock_open_periods(connection: Connection, board_ids: list[str]) -> dict[str, Any]:
    """{board id: its row, with its open period} for the boards that exist, each period locked FOR KEY SHARE.

    A period closed while this waited for its lock drops out of the result, and the period opened in its
    place was not in the statement's snapshot: those boards are locked again by a second statement,
    which sees the new period (READ COMMITTED takes a snapshot per statement)."""
    wanted = sorted(set(board_ids))
    locked = {row.id: row for row in connection.execute(_LOCK_OPEN, {"boards": wanted})}
    missing = [board_id for board_id in wanted if board_id not in locked]
    if missing:
        locked.update({row.id: row for row in connection.execute(_LOCK_OPEN, {"boards": missing})})
    return locked


def open_period(connection: Connection, board_id: str, reset_period: str, timezone: str,
                at: datetime | None = None) -> dict[str, Any]:
    """Open the board's period for `at` (now by default), named by the calendar (`2026-11-30`,
    `2026-W49`...) and, when that name was used already (a manual reset), suffixed `~2`, `~3`..."""
    row = connection.execute(text(
        "SELECT period, starts_at, ends_at FROM leaderboard_period(:reset, :tz, coalesce(:at, clock_timestamp()))"),
        {"reset": reset_period, "tz": timezone, "at": at}).one()
    used = connection.execute(text(
        "SELECT count(*) FROM leaderboard_periods WHERE leaderboard_id = :b AND (period = :p OR period LIKE :like)"),
        {"b": board_id, "p": row.period, "like": row.period + "~%"}).scalar()
    period = row.period if used == 0 else f"{row.period}~{used + 1}"
    starts_at = connection.execute(text("SELECT clock_timestamp()")).scalar() if used else row.starts_at
    connection.execute(text(
        "INSERT INTO leaderboard_periods (leaderboard_id, period, starts_at, ends_at) VALUES (:b, :p, :s, :e)"),
        {"b": board_id, "p": period, "s": starts_at, "e": row.ends_at})
    record_event(connection, board_id, "period_opened",
                     PeriodOpened(period=period, starts_at=starts_at, ends_at=row.ends_at))
    return {"period": period, "starts_at": starts_at, "ends_at": row.ends_at}


def final_standings(connection: Connection, board: Any, period: str, top: int) -> tuple[int, list[Standing]]:
    """(ranked entry count, the top `top`) of a board period, in the board's order."""
    count = connection.execute(text(
        "SELECT count(*) FROM leaderboard_entries WHERE leaderboard_id = :b AND period = :p AND score IS NOT NULL"),
        {"b": board.id, "p": period}).scalar()
    if board.max_entries is not None:
        count = min(count, board.max_entries)
    rows = connection.execute(text(f"""
        SELECT player_id, display_name, score FROM leaderboard_entries
        WHERE leaderboard_id = :b AND period = :p AND score IS NOT NULL
        ORDER BY {ranking_sql(board.sort_order)} LIMIT :n"""), {"b": board.id, "p": period, "n": min(top, count)})
    return count, [Standing(rank=i + 1, player_id=r.player_id, display_name=r.display_name, score=r.score)
                   for i, r in enumerate(rows)]


def roll_period(engine: Engine, board_id: str, *, final_top: int, manual: bool = False) -> dict[str, Any] | None:
    """Close the board's open period and open the next: when it has ended, or at once (`manual`, a reset).

    Returns the new period, or None when there was nothing to do (another process rolled it first, or
    the board is gone). Safe to call from any number of processes at once.
    """
    with engine.begin() as connection:
        board = connection.execute(text(f"""
            SELECT b.id, b.sort_order, b.max_entries, b.timezone, {SPAN_COLUMNS}, clock_timestamp() AS now
            FROM leaderboards b JOIN leaderboard_periods p ON p.leaderboard_id = b.id AND p.closed_at IS NULL
            WHERE b.id = :b AND b.deleted_at IS NULL
            FOR UPDATE OF p"""), {"b": board_id}).one_or_none()
        if board is None:
            return None
        ended = board.ends_at is not None and board.ends_at <= board.now
        if not (manual or ended):
            return None
        # Closed at the boundary (or at the reset): a write locked in the period counts in it.
        closed_at = board.ends_at if ended and not manual else board.now
        count, top = final_standings(connection, board, board.period, final_top)
        connection.execute(text(
            "UPDATE leaderboard_periods SET closed_at = :at, entry_count = :n WHERE leaderboard_id = :b AND period = :p"),
            {"at": closed_at, "n": count, "b": board_id, "p": board.period})
        record_event(connection, board_id, "period_closed",
                     PeriodClosed(period=board.period, closed_at=closed_at, entry_count=count, top=top,
                                  **period_span(board)))
        return open_period(connection, board_id, board.reset_period, board.timezone)


def close_due_periods(engine: Engine, *, final_top: int) -> int:
    """Roll every board whose period has ended; returns how many periods this call closed."""
    with engine.connect() as connection:
        due = connection.execute(text(
            "SELECT leaderboard_id FROM leaderboard_periods "
            "WHERE closed_at IS NULL AND ends_at IS NOT NULL AND ends_at <= clock_timestamp()")).scalars().all()
    return sum(roll_period(engine, board_id, final_top=final_top) is not None for board_id in due)
