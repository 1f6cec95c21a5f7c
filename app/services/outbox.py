"""The events outbox: the one place that writes it, inside the caller's transaction, and reads its backlog.

Every state change records its event here, in the same transaction as the change (DESIGN.md,
invariant 1). Use cases call `record_event` with their ORM session or Core connection; the paths
that write a whole batch in one SQL statement embed `outbox_insert`. Both count the event in
`events_written_total` once the transaction has committed, through `count_committed`.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, event, insert, text
from sqlalchemy.orm import Session

from app.events import AGGREGATE_OF, CURRENT_VERSION, new_event_id, payload_for
from app.metrics import EVENTS_WRITTEN
from app.models import Event

# Event types recorded in the session's open transaction; counted only once it commits.
_UNCOMMITTED = "livequiz.uncommitted_event_types"

# Served by the partial index ix_events_unpublished: cheap while the relay keeps up.
_LAG = text("""
    SELECT EXTRACT(EPOCH FROM clock_timestamp() - min(created_at)) AS lag_s, count(*) AS unpublished
    FROM events WHERE published_at IS NULL""")
_PUBLISHED = text("SELECT count(*) FROM events WHERE published_at IS NOT NULL")


def record_event(db: Session | Connection, aggregate_id: uuid.UUID | str, event_type: str, payload) -> uuid.UUID:
    """Append the event of a change to the outbox, in the caller's transaction (an ORM session's or a
    Core connection's); `aggregate_id` is the session's or the board's id (the event type says which)."""
    event_id = new_event_id()
    db.execute(insert(Event).values(
        id=event_id,
        aggregate_type=AGGREGATE_OF[event_type],
        aggregate_id=str(aggregate_id),
        event_type=event_type,
        version=CURRENT_VERSION[event_type],
        payload=payload_for(event_type, payload),
    ))
    connection = db.connection() if isinstance(db, Session) else db
    connection.info.setdefault(_UNCOMMITTED, []).append(event_type)
    return event_id


def outbox_insert(event_id: str, aggregate_id: str, event_type: str, payload: str, *, source: str) -> str:
    """`INSERT INTO events ... SELECT` of one event per row of `source`, for a statement that writes a
    batch at once; the arguments are SQL expressions over `source`, `event_type` a quoted literal."""
    version = CURRENT_VERSION[event_type.strip("'")]
    aggregate_type = AGGREGATE_OF[event_type.strip("'")]
    return (f"INSERT INTO events (id, aggregate_type, aggregate_id, event_type, version, payload) "
            f"SELECT {event_id}, '{aggregate_type}', {aggregate_id}, {event_type}, {version}, {payload} "
            f"FROM {source} RETURNING id")


def count_committed(event_type: str, count: int = 1) -> None:
    """Count events whose transaction has committed."""
    if count:
        EVENTS_WRITTEN.labels(event_type).inc(count)


@event.listens_for(Engine, "commit")
def _count_committed_events(connection: Connection) -> None:
    for event_type in connection.info.pop(_UNCOMMITTED, ()):
        count_committed(event_type)


@event.listens_for(Engine, "begin")
@event.listens_for(Engine, "rollback")
def _forget_rolled_back_events(connection: Connection) -> None:
    """At a rollback, and at every begin (a rollback of a connection the server dropped cannot reach
    the connection's record: what it held is forgotten when the record is next used)."""
    if connection.invalidated:
        return
    connection.info.pop(_UNCOMMITTED, None)


def outbox_lag(engine: Engine) -> tuple[float, int]:
    """(age in seconds of the oldest unpublished event, number of unpublished events)."""
    with engine.connect() as conn:
        row = conn.execute(_LAG).one()
    return (float(row.lag_s) if row.lag_s is not None else 0.0), int(row.unpublished)


@dataclass(frozen=True)
class OutboxStatus:
    unpublished: int
    published: int
    oldest_unpublished_age_s: float


def outbox_status(engine: Engine) -> OutboxStatus:
    """Backlog and retained history of the outbox; counting published rows scans them (ops only)."""
    lag_s, unpublished = outbox_lag(engine)
    with engine.connect() as conn:
        published = int(conn.execute(_PUBLISHED).scalar_one())
    return OutboxStatus(unpublished=unpublished, published=published, oldest_unpublished_age_s=lag_s)
