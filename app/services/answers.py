"""Answering the open question: the hot path of a live room.

Two statements per answer. The first reads the session, its open question and the participant,
taking a KEY SHARE lock on the session row: answers run side by side, while closing the question
(FOR UPDATE) waits for answers in flight and is then seen by every later one. The second writes the
answer, the new score and the `answer_scored` event in one statement. Scores and the deadline are
decided with PostgreSQL's clock, so every web process agrees.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.domain.scoring import score_answer
from app.domain.sessions import QUESTION_OPEN
from app.events import AGGREGATE_TYPE, CURRENT_VERSION, AnswerScored, new_event_id, payload_for
from app.services.errors import Conflict, Forbidden, Invalid, NotFound

_READ = text("""
    SELECT s.status, s.current_question_id, s.question_opened_at, s.question_deadline,
           q.correct_choice, q.points, q.time_limit_s, jsonb_array_length(q.choices) AS choice_count,
           p.id AS participant_id, p.nickname, p.streak, p.score, clock_timestamp() AS now
    FROM quiz_sessions s
    LEFT JOIN questions q ON q.id = s.current_question_id
    LEFT JOIN quiz_session_participants p ON p.quiz_session_id = s.id AND p.user_id = :user
    WHERE s.id = :session
    FOR KEY SHARE OF s""")

_WRITE = text("""
    WITH answer AS (
        INSERT INTO participant_answers (id, quiz_session_participant_id, quiz_session_id, question_id,
                                         choice, correct, points, answered_ms, created_at)
        VALUES (:answer_id, :participant, :session, :question, :choice, :correct, :points, :answered_ms, :now)
        ON CONFLICT (quiz_session_participant_id, question_id) DO NOTHING
        RETURNING id
    ), participant AS (
        UPDATE quiz_session_participants
        SET score = score + :points, streak = :streak,
            score_reached_at = CASE WHEN :points > 0 THEN :now ELSE score_reached_at END
        WHERE id = :participant AND EXISTS (SELECT 1 FROM answer)
        RETURNING score
    ), event AS (
        INSERT INTO events (id, aggregate_type, aggregate_id, event_type, version, payload)
        SELECT :event_id, :aggregate_type, :session, 'answer_scored', :version,
               CAST(:payload AS jsonb) || jsonb_build_object('total', participant.score)
        FROM participant
        RETURNING id
    )
    SELECT (SELECT id FROM answer) AS answer_id, (SELECT id FROM event) AS event_id""")


@dataclass(frozen=True)
class AnswerReceipt:
    answer_id: uuid.UUID
    question_id: uuid.UUID
    choice: int
    answered_ms: int


def submit_answer(db: Session, user_id: uuid.UUID, session_id: uuid.UUID, question_id: uuid.UUID,
                  choice: int) -> AnswerReceipt:
    with db.begin():
        row = db.execute(_READ, {"user": user_id, "session": session_id}).one_or_none()
        if row is None:
            raise NotFound("not_found", "no such session")
        if row.participant_id is None:
            raise Forbidden("not_joined", "join the session before answering")
        if row.current_question_id != question_id:
            raise Invalid("invalid_question", "that is not the session's current question")
        if row.status != QUESTION_OPEN or row.now > row.question_deadline:
            raise Conflict("question_closed", "the question is closed")
        if not 0 <= choice < row.choice_count:
            raise Invalid("invalid_choice", f"choice must be between 0 and {row.choice_count - 1}")
        answered_ms = max(0, int((row.now - row.question_opened_at).total_seconds() * 1000))
        scored = score_answer(correct=choice == row.correct_choice, points=row.points, answered_ms=answered_ms,
                              time_limit_s=row.time_limit_s, streak_before=row.streak)
        answer_id, event_id = uuid.uuid4(), new_event_id()
        payload = payload_for("answer_scored", AnswerScored(
            answer_id=answer_id, participant_id=row.participant_id, user_id=user_id, nickname=row.nickname,
            question_id=question_id, choice=choice, correct=scored.correct, points=scored.points,
            streak=scored.streak, answered_ms=answered_ms, answered_at=row.now, total=row.score + scored.points))
        written = db.execute(_WRITE, {
            "answer_id": answer_id, "participant": row.participant_id, "session": session_id,
            "question": question_id, "choice": choice, "correct": scored.correct, "points": scored.points,
            "answered_ms": answered_ms, "now": row.now, "streak": scored.streak, "event_id": event_id,
            "aggregate_type": AGGREGATE_TYPE, "version": CURRENT_VERSION["answer_scored"],
            "payload": json.dumps(payload),
        }).one()
        if written.answer_id is None:
            raise Conflict("already_answered", "you have already answered this question")
    return AnswerReceipt(answer_id=answer_id, question_id=question_id, choice=choice, answered_ms=answered_ms)
