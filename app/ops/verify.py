"""`ops verify`: compare the Redis boards with PostgreSQL, and report the outbox lag and dead letters."""
from __future__ import annotations

import sys
import time
import uuid

import click
from confluent_kafka import KafkaException

from app.extensions import runtime
from app.ops.common import config, ops, progress
from app.services.outbox import outbox_lag
from app.session_boards.rebuild import UnknownSession
from app.session_boards.verify import Difference, cached_sessions, compare_board
from cache_worker.dead_letters import dead_letter_counts


@ops.command("verify")
@click.option("--session", "session_ids", type=click.UUID, multiple=True,
              help="A session to check (repeatable).")
@click.option("--all", "all_sessions", is_flag=True, help="Every board in Redis (the default).")
@click.option("--settle", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="Seconds before boards that differ are checked again; only differences seen twice count "
                   "(events in flight are applied meanwhile).")
def verify_command(session_ids: tuple[uuid.UUID, ...], all_sessions: bool, settle: float) -> None:
    """Compare Redis leaderboards with the scores in PostgreSQL.

    Prints one line per difference (session, participant, Redis score, PostgreSQL score; a
    participant missing on either side counts; equal scores reached at different times rank ties
    differently and count too), then the outbox lag and the dead-letter count.
    A session that Redis does not cache is not a difference (it is rebuilt on first use).
    Exits 0 only when every board agrees, 1 otherwise. Repair with `ops rebuild`.
    """
    if session_ids and all_sessions:
        raise click.UsageError("give --session ID (repeatable) or --all, not both")
    live = runtime()
    engine, redis = live.engine, live.redis
    sessions = sorted({str(s) for s in session_ids} or cached_sessions(redis))
    found: dict[str, list[Difference]] = {}
    not_cached = 0
    unknown: list[str] = []
    with progress(sessions, len(sessions), "verifying boards") as bar:
        for session_id in bar:
            try:
                differences = compare_board(engine, redis, session_id)
            except UnknownSession:
                unknown.append(session_id)
                continue
            if differences is None:
                not_cached += 1
            elif differences:
                found[session_id] = differences
    if found and settle > 0:
        time.sleep(settle)
        for session_id in list(found):
            again = set(compare_board(engine, redis, session_id) or [])
            found[session_id] = [d for d in found[session_id] if d in again]
            if not found[session_id]:
                del found[session_id]
    for differences in found.values():
        for difference in differences:
            click.echo(difference.line())
    for session_id in unknown:
        click.echo(f"unknown session {session_id}: neither in Redis nor in PostgreSQL", err=True)
    lag_s, unpublished = outbox_lag(engine)
    click.echo(f"outbox: {unpublished} unpublished, oldest {lag_s:.1f} s old")
    dlq_topic = config().kafka_dlq_topic
    try:
        dead = dead_letter_counts(config())
    except KafkaException as exc:
        dead = None
        click.echo(f"dead letters: cannot read {dlq_topic}: {exc}", err=True)
    else:
        click.echo(f"dead letters: {dead.total} in {dlq_topic}, {dead.pending} pending redrive")
    dead_text = f"dead letters {dead.total} ({dead.pending} pending)" if dead else "dead letters unknown"
    players = sum(len(d) for d in found.values())
    click.echo(f"verify: {len(sessions)} sessions checked, {len(found)} differ ({players} participants), "
               f"{not_cached} not cached, {len(unknown)} unknown; "
               f"outbox lag {lag_s:.1f} s ({unpublished} unpublished); "
               f"{dead_text}")
    if found or unknown or dead is None:
        sys.exit(1)
