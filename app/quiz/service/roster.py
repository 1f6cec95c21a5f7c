"""Who plays a live session, as its host runs it: lock the room, list the players, remove one and put
them back (at any time of the game).

A removed player's answers stop counting from the moment of removal: their answer to the question open
then scores nothing (it stays in the report), and they cannot answer until put back. Points earned
before the removal are kept: the report lists them (unranked), and a player put back returns to the
board with them."""
from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.core.errors import Conflict, NotFound
from app.core.outbox import record_event
from app.quiz.domain import sessions as rules
from app.quiz.events import SESSION_EVENTS, ParticipantRemoved, ParticipantRestored
from app.quiz.service.sessions import lock_for_host

# The host's list of players is one page; a classroom is far smaller.
ROSTER_LIMIT = 500

_PLAYERS_LEFT = """(SELECT count(*) FROM quiz_session_participants
                    WHERE quiz_session_id = :s AND removed_at IS NULL)"""


def set_locked(db: Session, host_id: uuid.UUID, session_id: uuid.UUID, locked: bool) -> dict[str, Any]:
    with db.begin():
        lock_for_host(db, host_id, session_id)
        db.execute(text("UPDATE quiz_sessions SET locked = :locked WHERE id = :id"),
                   {"locked": locked, "id": session_id})
    return {"id": str(session_id), "locked": locked}


def list_players(db: Session, host_id: uuid.UUID, session_id: uuid.UUID) -> dict[str, Any]:
    """Every player of the session (removed ones too, to put back), by nickname; at most ROSTER_LIMIT.
    Each with whether they answered the open question, and their rejoin code: a student whose phone died
    before they noted theirs learns it from the host, who can see who is asking."""
    with db.begin():
        session = lock_for_host(db, host_id, session_id, for_update=False)
        rows = db.execute(text("""
            SELECT p.id, p.nickname, p.score, p.rejoin_code, p.removed_at IS NOT NULL AS removed,
                   EXISTS (SELECT 1 FROM participant_answers a WHERE a.quiz_session_participant_id = p.id
                             AND a.question_id = :q) AS answered
            FROM quiz_session_participants p
            WHERE p.quiz_session_id = :s ORDER BY lower(p.nickname) LIMIT :limit"""),
            {"s": session_id, "q": session.current_question_id, "limit": ROSTER_LIMIT + 1}).all()
    return {"players": [{"participant_id": str(r.id), "nickname": r.nickname, "score": r.score,
                         "removed": r.removed, "answered": r.answered, "rejoin_code": r.rejoin_code}
                        for r in rows[:ROSTER_LIMIT]],
            "more": len(rows) > ROSTER_LIMIT}


def remove_participant(db: Session, host_id: uuid.UUID, session_id: uuid.UUID,
                       participant_id: uuid.UUID) -> dict[str, Any]:
    """The host removes a player: off the board at once, their account cannot join or answer until put
    back, their answer to the open question scores nothing, and their streak ends. FOR UPDATE on the
    session waits for the answers in flight (they hold KEY SHARE)."""
    with db.begin():
        session = lock_for_host(db, host_id, session_id)
        removed = db.execute(text(f"""
            UPDATE quiz_session_participants SET removed_at = :now, removals = removals + 1, streak = 0
            WHERE id = :p AND quiz_session_id = :s AND removed_at IS NULL
            RETURNING removals, {_PLAYERS_LEFT} - 1 AS player_count"""),
            {"p": participant_id, "s": session_id, "now": session.now}).one_or_none()
        if removed is None:
            raise NotFound("not_found", "no such player in this session")
        # The open question's answer counts for nothing, and is done with: its close adds nothing to a
        # player who may be back by then (the board drops the held answer too, so both agree).
        db.execute(text("""
            UPDATE participant_answers SET points = 0, streak = 0, counted = true
            WHERE quiz_session_participant_id = :p AND NOT counted"""), {"p": participant_id})
        record_event(db, SESSION_EVENTS, session_id, "participant_removed", ParticipantRemoved(
            participant_id=participant_id, player_count=removed.player_count, removed_at=session.now,
            removal=removed.removals))
    return {"participant_id": str(participant_id), "removed": True, "player_count": removed.player_count}


def restore_participant(db: Session, host_id: uuid.UUID, session_id: uuid.UUID,
                        participant_id: uuid.UUID) -> dict[str, Any]:
    """Undo a removal while the game runs: the player is back on the board with the points they had,
    and may answer again from the next answer on."""
    with db.begin():
        session = lock_for_host(db, host_id, session_id)
        if session.status == rules.ENDED:
            raise Conflict("session_ended", "the game has ended: its players stay as they were")
        restored = db.execute(text(f"""
            UPDATE quiz_session_participants SET removed_at = NULL
            WHERE id = :p AND quiz_session_id = :s AND removed_at IS NOT NULL
            RETURNING nickname, score, score_reached_at, removals, {_PLAYERS_LEFT} + 1 AS player_count"""),
            {"p": participant_id, "s": session_id}).one_or_none()
        if restored is None:
            raise NotFound("not_found", "no removed player of this session has that id")
        record_event(db, SESSION_EVENTS, session_id, "participant_restored", ParticipantRestored(
            participant_id=participant_id, nickname=restored.nickname, score=restored.score,
            score_reached_at=restored.score_reached_at, player_count=restored.player_count,
            restored_at=session.now, removal=restored.removals))
    return {"participant_id": str(participant_id), "removed": False, "player_count": restored.player_count}
