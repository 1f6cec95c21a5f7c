"""Appending to the events outbox, inside the caller's transaction, and reading its backlog."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import Engine, event, insert, text
from sqlalchemy.orm import Session

from app.events import AGGREGATE_TYPE, CURRENT_VERSION, new_event_id, payload_for
from app.metrics import EVENTS_WRITTEN
from app.models import Event

# Event types recorded in the session's open transaction; counted only once it commits.
_UNCOMMITTED = "livequiz.uncommitted_event_types"

# Served by the partial index ix_events_unpublished: cheap while the relay keeps up.
_LAG = text("""
    SELECT EXTRACT(EPOCH FROM clock_timestamp() - min(created_at)) AS lag_s, count(*) AS unpublished
    FROM events WHERE published_at IS NULL""")
_PUBLISHED = text("SELECT count(*) FROM events WHERE published_at IS NOT NULL")


def record_event(db: Session, session_id: uuid.UUID, event_type: str, payload) -> uuid.UUID:
    event_id = new_event_id()
    db.execute(insert(Event).values(
        id=event_id,
        aggregate_type=AGGREGATE_TYPE,
        aggregate_id=session_id,
        event_type=event_type,
        version=CURRENT_VERSION[event_type],
        payload=payload_for(event_type, payload),
    ))
    db.info.setdefault(_UNCOMMITTED, []).append(event_type)
    return event_id


@event.listens_for(Session, "after_commit")
def _count_committed_events(db: Session) -> None:
    for event_type in db.info.pop(_UNCOMMITTED, ()):
        EVENTS_WRITTEN.labels(event_type).inc()


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back_events(db: Session) -> None:
    db.info.pop(_UNCOMMITTED, None)


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
