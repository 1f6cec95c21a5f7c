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
it with `starts_at` and `ends_at` in the board's zone (ISO 8601 with the offset) and a `label`
(app/leaderboards/spans.py).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

from app.core.outbox import record_event
from app.leaderboards.domain import ranking_sql
from app.leaderboards.events import LEADERBOARD_EVENTS, PeriodClosed, PeriodOpened, Standing
from app.leaderboards.spans import SPAN_COLUMNS, period_span

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
        "SELECT period, starts_at, ends_at "
        "FROM leaderboard_period(:reset, :tz, coalesce(:at, clock_timestamp()))"),
        {"reset": reset_period, "tz": timezone, "at": at}).one()
    used = connection.execute(text(
        "SELECT count(*) FROM leaderboard_periods "
        "WHERE leaderboard_id = :b AND (period = :p OR period LIKE :like)"),
        {"b": board_id, "p": row.period, "like": row.period + "~%"}).scalar()
    period = row.period if used == 0 else f"{row.period}~{used + 1}"
    starts_at = connection.execute(text("SELECT clock_timestamp()")).scalar() if used else row.starts_at
    connection.execute(text(
        "INSERT INTO leaderboard_periods (leaderboard_id, period, starts_at, ends_at) "
        "VALUES (:b, :p, :s, :e)"),
        {"b": board_id, "p": period, "s": starts_at, "e": row.ends_at})
    record_event(connection, LEADERBOARD_EVENTS, board_id, "period_opened",
                     PeriodOpened(period=period, starts_at=starts_at, ends_at=row.ends_at))
    return {"period": period, "starts_at": starts_at, "ends_at": row.ends_at}


def final_standings(connection: Connection, board: Any, period: str, top: int) -> tuple[int, list[Standing]]:
    """(ranked entry count, the top `top`) of a board period, in the board's order."""
    count = connection.execute(text(
        "SELECT count(*) FROM leaderboard_entries "
        "WHERE leaderboard_id = :b AND period = :p AND score IS NOT NULL"),
        {"b": board.id, "p": period}).scalar()
    if board.max_entries is not None:
        count = min(count, board.max_entries)
    rows = connection.execute(text(f"""
        SELECT player_id, display_name, score FROM leaderboard_entries
        WHERE leaderboard_id = :b AND period = :p AND score IS NOT NULL
        ORDER BY {ranking_sql(board.sort_order)} LIMIT :n"""),
        {"b": board.id, "p": period, "n": min(top, count)})
    return count, [Standing(rank=i + 1, player_id=r.player_id, display_name=r.display_name, score=r.score)
                   for i, r in enumerate(rows)]


def roll_period(engine: Engine, board_id: str, *, final_top: int,
                manual: bool = False) -> dict[str, Any] | None:
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
            "UPDATE leaderboard_periods SET closed_at = :at, entry_count = :n "
            "WHERE leaderboard_id = :b AND period = :p"),
            {"at": closed_at, "n": count, "b": board_id, "p": board.period})
        record_event(connection, LEADERBOARD_EVENTS, board_id, "period_closed",
                     PeriodClosed(period=board.period, closed_at=closed_at, entry_count=count, top=top,
                                  **period_span(board)))
        return open_period(connection, board_id, board.reset_period, board.timezone)


def close_due_periods(engine: Engine, *, final_top: int) -> int:
    """Roll every board whose period has ended; returns how many periods this call closed."""
    with engine.connect() as connection:
        due = connection.execute(text(
            "SELECT leaderboard_id FROM leaderboard_periods "
            "WHERE closed_at IS NULL AND ends_at IS NOT NULL AND ends_at <= clock_timestamp()"
        )).scalars().all()
    return sum(roll_period(engine, board_id, final_top=final_top) is not None for board_id in due)
