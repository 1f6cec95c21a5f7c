"""`ops verify`: compare the Redis boards (quiz sessions' and leaderboards') with PostgreSQL, and report
the outbox lag and the dead letters."""
from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import click
from confluent_kafka import KafkaException

from app.core.dead_letters import DeadLetterCounts, dead_letter_counts, dead_letter_queues
from app.core.outbox import outbox_lag
from app.core.projection import UnknownAggregate
from app.leaderboards.board.projection import LeaderboardProjection
from app.leaderboards.board.verify import cached_boards, cached_periods
from app.ops.common import board_options, config, database, ops, progress, redis_store
from app.quiz.board.projection import SessionBoardProjection
from app.quiz.board.verify import cached_sessions


@ops.command("verify")
@click.option("--session", "session_ids", type=click.UUID, multiple=True,
              help="A session to check (repeatable).")
@board_options
@click.option("--all", "all_boards", is_flag=True, help="Every board in Redis (the default).")
@click.option("--settle", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="Seconds before boards that differ are checked again; only differences seen twice count "
                   "(events in flight are applied meanwhile).")
def verify_command(session_ids: tuple[uuid.UUID, ...], board_ids: tuple[str, ...], period: str | None,
                   all_boards: bool, settle: float) -> None:
    """Compare Redis leaderboards with the scores in PostgreSQL.

    Prints one line per difference (session or board, player, Redis score, PostgreSQL score; a player
    missing on either side counts; equal scores reached at different times rank ties differently and
    count too), then the outbox lag and the dead-letter count. A board Redis does not cache is not a
    difference (it is rebuilt on first use). Exits 0 only when every board agrees, 1 otherwise.
    Repair with `ops rebuild`.
    """
    if (session_ids or board_ids) and all_boards:
        raise click.UsageError("give --session or --board IDs (repeatable), or --all, not both")
    engine, redis = database(), redis_store()
    session_boards = SessionBoardProjection(redis, engine)
    boards = LeaderboardProjection(redis, engine, config())
    everything = not (session_ids or board_ids)
    checks: dict[str, Callable[[], Any]] = {}
    chosen = {str(s) for s in session_ids} or (cached_sessions(redis) if everything else set())
    for session_id in sorted(chosen):
        checks[f"session {session_id}"] = lambda s=session_id: session_boards.verify((s,))
    for board_id in board_ids or (sorted(cached_boards(redis)) if everything else []):
        for board_period in [period] if period else cached_periods(redis, board_id):
            checks[f"board {board_id} {board_period}"] = (
                lambda b=board_id, p=board_period: boards.verify((b, p)))
    found: dict[str, list] = {}
    not_cached = 0
    unknown: list[str] = []
    with progress(list(checks.items()), len(checks), "verifying boards") as bar:
        for name, check in bar:
            try:
                differences = check()
            except UnknownAggregate:
                unknown.append(name)
                continue
            if differences is None:
                not_cached += 1
            elif differences:
                found[name] = differences
    if found and settle > 0:
        time.sleep(settle)
        for name in list(found):
            again = set(checks[name]() or [])
            found[name] = [d for d in found[name] if d in again]
            if not found[name]:
                del found[name]
    for differences in found.values():
        for difference in differences:
            click.echo(difference.line())
    for name in unknown:
        click.echo(f"unknown {name}: neither in Redis nor in PostgreSQL", err=True)
    lag_s, unpublished = outbox_lag(engine, config().relay_mode)
    click.echo(f"outbox: {unpublished} unpublished, oldest {lag_s:.1f} s old")
    dead = None
    queues = dead_letter_queues(config())
    try:
        counts = {name: dead_letter_counts(config(), queue) for name, queue in queues.items()}
    except KafkaException as exc:
        click.echo(f"dead letters: cannot read {', '.join(q.dlq_topic for q in queues.values())}: {exc}",
                   err=True)
    else:
        for name, count in counts.items():
            click.echo(f"dead letters: {count.total} in {queues[name].dlq_topic}, "
                       f"{count.pending} pending redrive")
        dead = DeadLetterCounts(sum(c.total for c in counts.values()),
                                sum(c.pending for c in counts.values()))
    dead_text = f"dead letters {dead.total} ({dead.pending} pending)" if dead else "dead letters unknown"
    players = sum(len(d) for d in found.values())
    sessions = sum(name.startswith("session ") for name in checks)
    click.echo(f"verify: {sessions} sessions checked, {len(found)} differ ({players} participants), "
               f"{len(checks) - sessions} board periods checked, {not_cached} not cached, "
               f"{len(unknown)} unknown; "
               f"outbox lag {lag_s:.1f} s ({unpublished} unpublished); "
               f"{dead_text}")
    if found or unknown or dead is None:
        sys.exit(1)
