"""Deleting games and what they hold about people: players' nicknames, their answers, and the events
that carried them. A host deletes a game (or a quiz with its games); ended games are deleted by
themselves after SESSION_RETENTION_DAYS.

Each deleted game records a `session_deleted` event in the same transaction, so the cache worker
forgets the game's keys in Redis and its room's sockets close. Its earlier outbox rows go with it
(they name its players); what Kafka already holds ages out with the topic's retention.
"""
from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

from app.core.errors import Conflict
from app.core.outbox import record_event
from app.quiz.domain import sessions as rules
from app.quiz.events import QUIZ_SESSION, SESSION_EVENTS, SessionDeleted
from app.quiz.service.sessions import lock_for_host

SESSIONS_PER_PURGE = 100


def delete_sessions(db: Session | Connection, session_ids: Sequence[uuid.UUID]) -> int:
    """Delete these games with their players, answers and events, in the caller's transaction."""
    if not session_ids:
        return 0
    ids = {"ids": list(session_ids)}
    # The games first, in one order, as every other writer of a game locks it first: answers in
    # flight finish (they hold KEY SHARE), and two deletes never wait on each other in a circle.
    db.execute(text("SELECT id FROM quiz_sessions WHERE id = ANY(:ids) ORDER BY id FOR UPDATE"), ids)
    db.execute(text("DELETE FROM participant_answers WHERE quiz_session_id = ANY(:ids)"), ids)
    db.execute(text("DELETE FROM events WHERE aggregate_type = :type AND aggregate_id = ANY(:keys)"),
               {"type": QUIZ_SESSION, "keys": [str(i) for i in session_ids]})
    # Its participants go by ON DELETE CASCADE.
    deleted = db.execute(text("DELETE FROM quiz_sessions WHERE id = ANY(:ids) "
                              "RETURNING id, clock_timestamp()"), ids).all()
    for session_id, now in deleted:
        record_event(db, SESSION_EVENTS, session_id, "session_deleted", SessionDeleted(deleted_at=now))
    return len(deleted)


def delete_session(db: Session, host_id: uuid.UUID, session_id: uuid.UUID) -> dict[str, Any]:
    """The host deletes a game: in its lobby or once it has ended, never while a question is on."""
    with db.begin():
        session = lock_for_host(db, host_id, session_id)
        if session.status not in (rules.LOBBY, rules.ENDED):
            raise Conflict("session_live", "the game is running: end it before you delete it")
        delete_sessions(db, [session_id])
    return {"id": str(session_id), "deleted": True}


# When a game's retention starts: its end, or for one that never ended (abandoned), its last question
# or its creation. The expression of ix_quiz_sessions_retained_from.
RETAINED_FROM = "coalesce(ended_at, question_shown_at, created_at)"


def purge_expired_sessions(engine: Engine, retention_days: float) -> int:
    """Delete games whose retention started longer than `retention_days` ago, a batch at a time, and
    pictures no question shows any more; returns how many games."""
    with engine.begin() as connection:
        expired = connection.execute(text(f"""
            SELECT id FROM quiz_sessions
            WHERE {RETAINED_FROM} < clock_timestamp() - make_interval(secs => :age)
            ORDER BY {RETAINED_FROM} LIMIT :n FOR UPDATE SKIP LOCKED"""),
            {"age": retention_days * 86400, "n": SESSIONS_PER_PURGE}).scalars().all()
        deleted = delete_sessions(connection, expired)
        delete_unused_images(connection, older_than_s=UNUSED_IMAGE_GRACE_S)
    return deleted


# An upload waits this long for the quiz that will show it (a host may take days to finish one).
UNUSED_IMAGE_GRACE_S = 7 * 86400


def delete_unused_images(db: Session | Connection, *, among: Sequence[uuid.UUID] | None = None,
                         older_than_s: float = 0.0) -> int:
    """Delete pictures that no question shows (of `among`, or anyone's), uploaded longer ago than
    `older_than_s`."""
    return db.execute(text("""
        DELETE FROM question_images i
        WHERE (CAST(:among AS uuid[]) IS NULL OR i.id = ANY(CAST(:among AS uuid[])))
          AND i.created_at < clock_timestamp() - make_interval(secs => :age)
          AND NOT EXISTS (SELECT 1 FROM questions q WHERE q.image_id = i.id)"""),
        {"among": None if among is None else list(among), "age": older_than_s}).rowcount

