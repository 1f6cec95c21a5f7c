"""Boards: created and owned by registered users, configured once (name and max_entries may change),
deleted by their owner. `default` is the system's own board and cannot be deleted.

Ids are unique and reserved whatever their case (`Foo` cannot be made beside `foo`, nor `DEFAULT`;
PostgreSQL's unique index on lower(id) holds it), and are looked up exactly as they were created:
an id names the board's Redis keys, Kafka key and events, so one board has one spelling everywhere,
and a miss in another case can never reach someone else's board.

Every change writes its event in the same transaction: board_created / board_updated carry the whole
configuration with its revision, so a late or replayed event never reverts a newer one.
"""
from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from app.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from app.core.outbox import record_event
from app.leaderboards.domain import DEFAULT_BOARD
from app.leaderboards.events import LEADERBOARD_EVENTS, BoardConfigured, BoardDeleted
from app.leaderboards.service.periods import open_period, roll_period
from app.leaderboards.spans import DEPRECATED_ENTRY_COUNT, SPAN_COLUMNS, period_span

_BOARD_COLUMNS = """b.id, b.name, b.owner_id, b.sort_order, b.update_mode, b.reset_period, b.timezone,
    b.max_entries, b.self_report_max, b.metadata, b.revision, b.created_at"""
_WITH_PERIOD = f"""
    SELECT {_BOARD_COLUMNS}, p.period, p.starts_at AS prev_reset, p.ends_at AS next_reset
    FROM leaderboards b LEFT JOIN leaderboard_periods p ON p.leaderboard_id = b.id AND p.closed_at IS NULL
    WHERE b.deleted_at IS NULL"""


def board_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "name": row.name, "owner_id": str(row.owner_id) if row.owner_id else None,
        "sort_order": row.sort_order, "update_mode": row.update_mode, "reset_period": row.reset_period,
        "timezone": row.timezone, "max_entries": row.max_entries, "self_report_max": row.self_report_max,
        "metadata": row.metadata or {}, "created_at": row.created_at.isoformat(),
        "current_period": row.period,
        "prev_reset": row.prev_reset.isoformat() if row.prev_reset else None,
        "next_reset": row.next_reset.isoformat() if row.next_reset else None,
    }


def _configured(row: Any) -> BoardConfigured:
    return BoardConfigured(revision=row.revision, name=row.name, sort_order=row.sort_order,
                           update_mode=row.update_mode, reset_period=row.reset_period,
                           max_entries=row.max_entries)


def _valid_timezone(connection: Connection, timezone: str) -> bool:
    return bool(connection.execute(text("SELECT count(*) FROM pg_timezone_names WHERE name = :tz"),
                                   {"tz": timezone}).scalar())


def create_board(engine: Engine, owner_id: uuid.UUID, settings: dict[str, Any]) -> dict[str, Any]:
    """Create a board and open its first period; 409 board_exists when the id, in any case, was ever used."""
    if settings["id"].lower() == DEFAULT_BOARD:
        raise Conflict("board_exists", "the board id `default` is reserved (ids are case-insensitive)")
    try:
        with engine.begin() as connection:
            if not _valid_timezone(connection, settings["timezone"]):
                # PostgreSQL's time zone database decides, not the request's shape: 422.
                raise Unprocessable("invalid_timezone",
                                    f"unknown time zone {settings['timezone']!r} (an IANA name)")
            row = connection.execute(text(f"""
                INSERT INTO leaderboards AS b (id, name, owner_id, sort_order, update_mode, reset_period,
                                               timezone, max_entries, self_report_max, metadata)
                VALUES (:id, :name, :owner, :sort_order, :update_mode, :reset_period, :timezone, :max_entries,
                        :self_report_max, CAST(:metadata AS jsonb))
                RETURNING {_BOARD_COLUMNS}"""),
                {**settings, "owner": owner_id, "metadata": json.dumps(settings.get("metadata") or {})}).one()
            record_event(connection, LEADERBOARD_EVENTS, row.id, "board_created", _configured(row))
            open_period(connection, row.id, row.reset_period, row.timezone)
    except IntegrityError:
        raise Conflict("board_exists",
                       f"a board {settings['id']!r} exists (or existed); ids are case-insensitive") from None
    return get_board(engine, settings["id"])


def get_board(engine: Engine, board_id: str) -> dict[str, Any]:
    with engine.connect() as connection:
        row = connection.execute(text(_WITH_PERIOD + " AND b.id = :id"), {"id": board_id}).one_or_none()
    if row is None:
        raise NotFound("not_found", "no such board")
    return board_view(row)


def list_boards(engine: Engine, *, after: str | None, limit: int) -> dict[str, Any]:
    """A page of boards by id; `next` is the cursor of the following page (None at the end)."""
    with engine.connect() as connection:
        rows = connection.execute(text(_WITH_PERIOD + " AND (CAST(:after AS text) IS NULL OR b.id > :after) "
                                       "ORDER BY b.id LIMIT :n"), {"after": after, "n": limit + 1}).all()
    page = [board_view(row) for row in rows[:limit]]
    return {"boards": page, "next": page[-1]["id"] if len(rows) > limit else None}


def _owned(connection: Connection, board_id: str, owner_id: uuid.UUID, *, lock: bool = True) -> Any:
    row = connection.execute(text(
        f"SELECT {_BOARD_COLUMNS} FROM leaderboards b WHERE b.id = :id AND b.deleted_at IS NULL"
        + (" FOR UPDATE" if lock else "")), {"id": board_id}).one_or_none()
    if row is None:
        raise NotFound("not_found", "no such board")
    if row.owner_id != owner_id:
        raise Forbidden("not_owner", "only the board's owner can do that")
    return row


def update_board(engine: Engine, owner_id: uuid.UUID, board_id: str,
                 changes: dict[str, Any]) -> dict[str, Any]:
    """Rename or resize a board (the rest of its configuration is fixed); a new revision and its event."""
    with engine.begin() as connection:
        _owned(connection, board_id, owner_id)
        row = connection.execute(text(f"""
            UPDATE leaderboards b SET name = coalesce(:name, b.name),
                   max_entries = CASE WHEN :set_max THEN :max_entries ELSE b.max_entries END,
                   revision = b.revision + 1
            WHERE b.id = :id RETURNING {_BOARD_COLUMNS}"""),
            {"id": board_id, "name": changes.get("name"), "set_max": "max_entries" in changes,
             "max_entries": changes.get("max_entries")}).one()
        record_event(connection, LEADERBOARD_EVENTS, board_id, "board_updated", _configured(row))
    return get_board(engine, board_id)


def delete_board(engine: Engine, owner_id: uuid.UUID, board_id: str) -> None:
    """Delete a board with its scores; its id stays reserved, so it never names another board."""
    if board_id == DEFAULT_BOARD:
        raise Forbidden("board_reserved", "the default board cannot be deleted")
    with engine.begin() as connection:
        _owned(connection, board_id, owner_id)
        deleted_at = connection.execute(text(
            "UPDATE leaderboards SET deleted_at = clock_timestamp() WHERE id = :id RETURNING deleted_at"),
            {"id": board_id}).scalar()
        for table in ("leaderboard_entries", "score_submissions", "player_activity"):
            connection.execute(text(f"DELETE FROM {table} WHERE leaderboard_id = :id"), {"id": board_id})
        record_event(connection, LEADERBOARD_EVENTS, board_id, "board_deleted",
                     BoardDeleted(deleted_at=deleted_at))


def reset_board(engine: Engine, owner_id: uuid.UUID, board_id: str, *, final_top: int) -> dict[str, Any]:
    """Close the current period now and open a new one."""
    with engine.connect() as connection:
        _owned(connection, board_id, owner_id, lock=False)
    roll_period(engine, board_id, final_top=final_top, manual=True)
    return get_board(engine, board_id)


def list_periods(engine: Engine, board_id: str) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        if connection.execute(text("SELECT count(*) FROM leaderboards WHERE id = :id AND deleted_at IS NULL"),
                              {"id": board_id}).scalar() == 0:
            raise NotFound("not_found", "no such board")
        rows = connection.execute(text(
            f"SELECT {SPAN_COLUMNS}, p.closed_at, p.entry_count FROM leaderboard_periods p "
            "JOIN leaderboards b ON b.id = p.leaderboard_id "
            "WHERE p.leaderboard_id = :id ORDER BY p.starts_at DESC, p.period DESC"), {"id": board_id}).all()
    return [{"period": r.period, **period_span(r),
             "closed_at": r.closed_at.isoformat() if r.closed_at else None,
             "total": r.entry_count, "open": r.closed_at is None, DEPRECATED_ENTRY_COUNT: r.entry_count}
            for r in rows]
