"""The outbox counts an event in `events_written_total` only once its transaction has committed, and a
transaction whose connection the server dropped fails as the store being away (503), never as a
500 from the bookkeeping."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.core.metrics import EVENTS_WRITTEN
from app.core.outbox import record_event
from app.quiz.events import SESSION_EVENTS, SessionEnded


def _written() -> float:
    return EVENTS_WRITTEN.labels("session_ended")._value.get()


def _terminate(engine, pid: int) -> None:
    with engine.connect() as other:
        other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        other.commit()


def test_a_dropped_connection_fails_as_the_store_being_away_and_counts_nothing(engine):
    before = _written()
    db = Session(engine)
    with pytest.raises(OperationalError):  # what the API answers 503 with Retry-After
        with db.begin():
            record_event(db, SESSION_EVENTS, uuid.uuid4(), "session_ended",
                         SessionEnded(ended_at="2026-12-01T00:00:00Z"))
            _terminate(engine, db.execute(text("SELECT pg_backend_pid()")).scalar())
            db.execute(text("SELECT 1"))
    db.close()
    # The pool's next transaction commits and counts only its own event.
    with Session(engine) as db, db.begin():
        record_event(db, SESSION_EVENTS, uuid.uuid4(), "session_ended",
                     SessionEnded(ended_at="2026-12-01T00:00:00Z"))
    assert _written() == before + 1
