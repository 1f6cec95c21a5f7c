"""`ops replay`: publish stored events to the main topic again, with their original ids."""
from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from sqlalchemy import text

from app.core.events import envelope_from_row
from app.core.kafka import DeliveryTracker, make_producer, produce
from app.core.outbox import published_condition
from app.ops.common import config, database, one_selection, ops, progress

_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_AGO_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class SinceParam(click.ParamType):
    """An ISO 8601 instant (UTC when no offset is given) or a duration ago: 90s, 30m, 2h, 1d."""

    name = "TIME"

    def convert(self, value: Any, param, ctx) -> datetime:
        if isinstance(value, datetime):
            return value
        ago = _AGO.match(value.strip())
        if ago:
            return datetime.now(UTC) - timedelta(**{_AGO_UNITS[ago.group(2)]: float(ago.group(1))})
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            self.fail(f"{value!r} is neither an ISO 8601 time nor a duration like 30m, 2h, 1d", param, ctx)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _replay_filter(aggregate_ids: list[str], since: datetime | None) -> tuple[str, dict[str, Any]]:
    published, params = published_condition(database(), config().relay_mode)
    where = [published]
    params = dict(params)
    if aggregate_ids:
        where.append("aggregate_id = ANY(:aggregates)")
        params["aggregates"] = aggregate_ids
    if since is not None:
        where.append("created_at >= :since")
        params["since"] = since
    return " AND ".join(where), params


def await_deliveries(producer, tracker: DeliveryTracker, sent: int, what: str) -> None:
    """Wait for every delivery report; a command fails when any message was not delivered."""
    remaining = producer.flush(60.0)
    if remaining or tracker.failures or tracker.delivered != sent:
        first = tracker.failures[0] if tracker.failures else "no delivery report"
        raise click.ClickException(f"{what}: {sent - tracker.delivered} of {sent} not delivered ({first})")


@ops.command("replay")
@click.option("--session", "session_ids", type=click.UUID, multiple=True,
              help="A session to replay (repeatable).")
@click.option("--board", "board_ids", multiple=True, help="A leaderboard to replay (repeatable).")
@click.option("--all", "all_sessions", is_flag=True, help="Every session's stored events.")
@click.option("--since", type=SinceParam(), default=None,
              help="Only events created at or after TIME: ISO 8601 (UTC if no offset) or ago, e.g. 2h.")
def replay_command(session_ids: tuple[uuid.UUID, ...], board_ids: tuple[str, ...], all_sessions: bool,
                   since: datetime | None) -> None:
    """Publish stored events to the main topic again, with the same event ids.

    For a consumer that lost its state or a new consumer. Each event is sent exactly as the relay
    sends it (key = session or board id, so one partition each; same envelope and headers), in
    (created_at, seq) order, so an aggregate's effect is not reordered; the worker skips events it
    applied already, so a correct board never changes.

    Only events the relay has published are replayed (unpublished ones are the relay's to send,
    in order). The relay drops a day's published events RELAY_RETENTION_HOURS after the day ended,
    so replay covers what is retained; a board needs no events to be repaired: use `ops rebuild`.
    """
    one_selection(session_ids, all_sessions, board_ids)
    settings, engine = config(), database()
    where, params = _replay_filter([str(s) for s in session_ids] + list(board_ids), since)
    with engine.connect() as connection:
        total = int(connection.execute(text(f"SELECT count(*) FROM events WHERE {where}"),
                                       params).scalar_one())
    producer = make_producer(settings, **{"client.id": "ops-replay"})
    tracker = DeliveryTracker()
    sent = 0
    sessions: set[str] = set()
    query = text(f"""SELECT id, aggregate_type, aggregate_id, event_type, version, payload, created_at
                     FROM events WHERE {where} ORDER BY created_at, seq""")
    with engine.connect() as connection:
        rows = connection.execution_options(stream_results=True, yield_per=1000).execute(query, params)
        with progress(rows, total, "replaying events") as bar:
            for row in bar:
                envelope = envelope_from_row(row)
                produce(producer, settings.kafka_topic, key=envelope.key(), value=envelope.to_json(),
                        headers=envelope.headers(), on_delivery=tracker)
                sent += 1
                sessions.add(envelope.aggregate_id)
    await_deliveries(producer, tracker, sent, "replay")
    click.echo(f"replay: {sent} events of {len(sessions)} sessions or boards sent to {settings.kafka_topic}"
               + (f" (created since {since.isoformat()})" if since else ""))
