"""What a live room reads from PostgreSQL: who may enter, and each player's standing."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from app.core.db import read_connection
from app.core.errors import Forbidden, NotFound
from app.quiz.board.scores import RANK_ORDER_SQL
from app.quiz.domain import scoring
from app.quiz.domain.sessions import QUESTION_OPEN


@dataclass(frozen=True)
class RoomMember:
    session_id: uuid.UUID
    is_host: bool
    participant_id: uuid.UUID | None
    nickname: str | None


def room_member(engine: Engine, session_id: uuid.UUID, user_id: uuid.UUID) -> RoomMember:
    """Who `user_id` is in the session's room (its host or a player), or NotFound / Forbidden."""
    with read_connection(engine) as db:
        row = db.execute(text("""
            SELECT s.host_id, p.id AS participant_id, p.nickname FROM quiz_sessions s
            LEFT JOIN quiz_session_participants p ON p.quiz_session_id = s.id AND p.user_id = :user
                                                  AND p.removed_at IS NULL
            WHERE s.id = :session"""), {"session": session_id, "user": user_id}).one_or_none()
    if row is None:
        raise NotFound("not_found", "no such session")
    if row.host_id != user_id and row.participant_id is None:
        raise Forbidden("not_in_session", "only the host and the session's players may enter")
    return RoomMember(session_id, row.host_id == user_id, row.participant_id, row.nickname)


_STANDINGS = f"""
    SELECT id, nickname, score, streak, rank FROM (
        SELECT p.id, p.nickname, p.score, p.streak, row_number() OVER (ORDER BY {RANK_ORDER_SQL}) AS rank
        FROM quiz_session_participants p JOIN quiz_sessions s ON s.id = p.quiz_session_id
        WHERE p.quiz_session_id = :session AND p.removed_at IS NULL) ranked
    WHERE id = ANY(:ids)"""


def standings(db: Session, session_id: uuid.UUID,
              participant_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    """Score, streak and rank of the given players, ranked as the board ranks them (board/scores.py)."""
    if not participant_ids:
        return {}
    with db.begin():
        rows = db.execute(text(_STANDINGS), {"session": session_id, "ids": participant_ids}).all()
    return {row.id: {"participant_id": str(row.id), "nickname": row.nickname, "score": row.score,
                     "streak": row.streak, "rank": row.rank} for row in rows}


def question_results(db: Session, session_id: uuid.UUID, question_id: uuid.UUID,
                     participant_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    """For each given player: whether they were right, the points earned, and their standing after."""
    if not participant_ids:
        return {}
    results = standings(db, session_id, participant_ids)
    with db.begin():
        answers = {row.pid: row for row in db.execute(text("""
            SELECT quiz_session_participant_id AS pid, choice, correct, points, streak
            FROM participant_answers
            WHERE quiz_session_id = :session AND question_id = :question
              AND quiz_session_participant_id = ANY(:ids)"""),
            {"session": session_id, "question": question_id, "ids": participant_ids})}
    for participant_id, standing in results.items():
        answer = answers.get(participant_id)
        standing["answered"] = answer is not None
        standing["choice"] = answer.choice if answer else None
        standing["correct"] = bool(answer and answer.correct)
        standing["points"] = answer.points if answer else 0
        # The part of the points its streak earned, so the player sees why a fast answer scored more.
        standing["streak_bonus"] = scoring.streak_bonus(answer.streak) if answer and answer.points else 0
    return results


def own_answers(db: Session, session_id: uuid.UUID,
                participant_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any] | None]:
    """Each given player's answer to the session's current question (None: not answered), so a reload or a
    second device shows what they picked. Whether it was right, and its points, only once the question
    has closed: while it is open they would give the answer away."""
    if not participant_ids:
        return {}
    with db.begin():
        rows = db.execute(text("""
            SELECT p.id AS pid, s.current_question_id AS question_id, s.status, a.choice, a.correct, a.points
            FROM quiz_sessions s
            JOIN quiz_session_participants p ON p.quiz_session_id = s.id AND p.id = ANY(:ids)
            LEFT JOIN participant_answers a ON a.quiz_session_participant_id = p.id
                                           AND a.question_id = s.current_question_id
            WHERE s.id = :session AND s.current_question_id IS NOT NULL"""),
            {"session": session_id, "ids": participant_ids}).all()
    answers: dict[uuid.UUID, dict[str, Any] | None] = {}
    for row in rows:
        if row.choice is None:
            answers[row.pid] = None
            continue
        answer = {"question_id": str(row.question_id), "choice": row.choice}
        if row.status != QUESTION_OPEN:
            answer.update(correct=row.correct, points=row.points)
        answers[row.pid] = answer
    return answers


def previous_results(db: Session, session_id: uuid.UUID,
                     participant_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    """Each given player's result on the question before the current one (closed by then), so a device
    that was away while it closed still learns how it went: answered or not, right or not, the points."""
    if not participant_ids:
        return {}
    with db.begin():
        rows = db.execute(text("""
            SELECT p.id AS pid, pq.id AS question_id, pq.position, a.choice, a.correct, a.points
            FROM quiz_sessions s
            JOIN questions cq ON cq.id = s.current_question_id
            JOIN questions pq ON pq.quiz_id = cq.quiz_id AND pq.position = cq.position - 1
            JOIN quiz_session_participants p ON p.quiz_session_id = s.id AND p.id = ANY(:ids)
            LEFT JOIN participant_answers a ON a.quiz_session_participant_id = p.id AND a.question_id = pq.id
            WHERE s.id = :session"""), {"session": session_id, "ids": participant_ids}).all()
    return {row.pid: {"question_id": str(row.question_id), "position": row.position,
                      "answered": row.choice is not None, "choice": row.choice,
                      "correct": bool(row.correct), "points": row.points or 0} for row in rows}
