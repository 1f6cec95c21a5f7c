"""Appending to the events outbox, inside the caller's transaction."""
from __future__ import annotations

import uuid

from sqlalchemy import insert
from sqlalchemy.orm import Session

from app.events import AGGREGATE_TYPE, CURRENT_VERSION, new_event_id, payload_for
from app.models import Event


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
    return event_id
