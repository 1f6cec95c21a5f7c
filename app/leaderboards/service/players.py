"""A player across boards (seed 002's multi-game scoreboard): the boards they are on, and the actions
they reported."""
from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Engine, text

from app.core.errors import NotFound
from app.leaderboards.board.reads import LeaderboardReader
from app.leaderboards.spans import SPAN_FIELDS


def boards_of(engine: Engine, reader: LeaderboardReader, player_id: str) -> list[dict[str, Any]]:
    """Every board whose current period has the player, with their rank and score there."""
    with engine.connect() as connection:
        rows = connection.execute(text("""
            SELECT b.id, b.name, p.period FROM leaderboard_entries e
            JOIN leaderboard_periods p ON p.leaderboard_id = e.leaderboard_id AND p.period = e.period
                                      AND p.closed_at IS NULL
            JOIN leaderboards b ON b.id = e.leaderboard_id AND b.deleted_at IS NULL
            WHERE e.player_id = :player AND e.score IS NOT NULL ORDER BY b.id"""),
            {"player": player_id}).all()
    standings = []
    for row in rows:
        try:
            standing = reader.player(row.id, player_id, period=row.period)
        except NotFound:  # removed since: not on that board any more
            continue
        standings.append({"leaderboard_id": row.id, "name": row.name, "period": row.period,
                          **{k: standing[k] for k in SPAN_FIELDS}, "rank": standing["rank"],
                          "score": standing["score"], "total": standing["total"],
                          "top_percent": standing["top_percent"], "metadata": standing["metadata"]})
    return standings


def activity_of(engine: Engine, player_id: str, viewer_id: uuid.UUID, limit: int) -> list[dict[str, Any]]:
    """The player's reported actions, newest first: all of them for the player, and for anyone else
    those on the boards they own."""
    with engine.connect() as connection:
        rows = connection.execute(text("""
            SELECT a.leaderboard_id, a.action, a.points, a.created_at FROM player_activity a
            JOIN leaderboards b ON b.id = a.leaderboard_id
            WHERE a.player_id = :player AND (:player = CAST(:viewer AS text) OR b.owner_id = :viewer)
            ORDER BY a.created_at DESC, a.id DESC LIMIT :n"""),
            {"player": player_id, "viewer": viewer_id, "n": limit}).all()
    return [{"leaderboard_id": r.leaderboard_id, "action": r.action, "points": r.points,
             "at": r.created_at.isoformat()} for r in rows]


def find_by_name(engine: Engine, board_id: str, period: str, name: str, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` players of a board period whose display name is `name` in any case, or whose id is
    `name` (ids are exact), by id: what a person types to find someone on a board. Both are index reads
    (the entries' key, and ix_leaderboard_entries_name), whatever the size of the board."""
    with engine.connect() as connection:
        rows = connection.execute(text("""
            SELECT player_id, display_name FROM leaderboard_entries
            WHERE leaderboard_id = :board AND period = :period AND score IS NOT NULL
              AND (player_id = :name OR lower(display_name) = lower(:name))
            ORDER BY player_id LIMIT :n"""),
            {"board": board_id, "period": period, "name": name, "n": limit}).all()
    return [{"player_id": r.player_id, "display_name": r.display_name} for r in rows]
