"""`ops rebuild`: rebuild session boards from PostgreSQL, each swapped in atomically."""
from __future__ import annotations

import sys
import uuid

import click
from sqlalchemy import text

from app.core.projection import UnknownAggregate
from app.leaderboards.board.projection import LeaderboardProjection
from app.leaderboards.board.verify import cached_boards, cached_periods
from app.ops.common import board_options, config, database, one_selection, ops, progress, redis_store
from app.quiz.board.projection import SessionBoardProjection
from app.quiz.board.verify import cached_sessions, drop_session_board
from app.quiz.domain.sessions import LIVE_SQL


def _live_postgres_sessions(engine) -> set[str]:
    with engine.connect() as connection:
        live = connection.execute(text(f"SELECT id FROM quiz_sessions WHERE {LIVE_SQL}")).scalars()
        return {str(s) for s in live}


@ops.command("rebuild")
@click.option("--session", "session_ids", type=click.UUID, multiple=True,
              help="A session to rebuild (repeatable).")
@board_options
@click.option("--all", "all_sessions", is_flag=True,
              help="Every board and period Redis holds and every session not ended in PostgreSQL.")
def rebuild_command(session_ids: tuple[uuid.UUID, ...], board_ids: tuple[str, ...], period: str | None,
                    all_sessions: bool) -> None:
    """Rebuild leaderboards from PostgreSQL, swapping each in atomically.

    Safe while traffic flows: events applied during a rebuild are carried over by the swap, and
    events it already counted are marked applied so their delivery is skipped. With --all, a board
    whose session PostgreSQL does not know is removed (PostgreSQL is the truth). Ended sessions
    that Redis no longer caches are left alone: reads rebuild them on demand.
    """
    one_selection(session_ids, all_sessions, board_ids)
    engine, redis = database(), redis_store()
    boards = LeaderboardProjection(redis, engine, config())
    if board_ids:
        _rebuild_boards(boards, board_ids, period)
        if not session_ids:
            return
    if all_sessions:
        _rebuild_cached_boards(boards)
        sessions = sorted(cached_sessions(redis) | _live_postgres_sessions(engine))
    else:
        sessions = [str(s) for s in session_ids]
    session_boards = SessionBoardProjection(redis, engine)
    rebuilt = players = dropped = 0
    unknown: list[str] = []
    with progress(sessions, len(sessions), "rebuilding boards") as bar:
        for session_id in bar:
            try:
                result = session_boards.rebuild((session_id,))
            except UnknownAggregate:
                if all_sessions:
                    drop_session_board(redis, session_id)
                    dropped += 1
                else:
                    unknown.append(session_id)
                continue
            rebuilt += 1
            players += result.players
    for session_id in unknown:
        click.echo(f"unknown session {session_id}: not in PostgreSQL", err=True)
    click.echo(f"rebuild: {rebuilt} boards rebuilt ({players} players), {dropped} boards of unknown sessions "
               f"removed, {len(unknown)} unknown sessions")
    if unknown:
        sys.exit(1)


def _rebuild_cached_boards(boards: LeaderboardProjection) -> None:
    """Every period Redis holds of every board it holds; a board PostgreSQL does not know is removed."""
    rebuilt = entries = removed = 0
    for board_id in sorted(cached_boards(boards.redis)):
        try:
            for board_period in cached_periods(boards.redis, board_id) or [None]:
                entries += boards.rebuild((board_id, board_period)).entries
                rebuilt += 1
        except UnknownAggregate:
            boards.forget(boards.redis, board_id)
            removed += 1
    click.echo(f"rebuild: {rebuilt} board periods rebuilt ({entries} entries), {removed} boards unknown to "
               "PostgreSQL removed")


def _rebuild_boards(boards: LeaderboardProjection, board_ids: tuple[str, ...], period: str | None) -> None:
    rebuilt, unknown = [], []
    for board_id in board_ids:
        try:
            rebuilt.append(boards.rebuild((board_id, period)))
        except UnknownAggregate:
            unknown.append(board_id)
    for board_id in unknown:
        click.echo(f"unknown board {board_id}{' period ' + period if period else ''}: not in PostgreSQL",
                   err=True)
    click.echo(f"rebuild: {len(rebuilt)} board periods rebuilt ({sum(r.entries for r in rebuilt)} entries), "
               f"{len(unknown)} unknown boards")
    if unknown:
        sys.exit(1)
