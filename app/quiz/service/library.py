"""A host's quiz library: list, edit, duplicate, delete, and the games each quiz has run.

An edit of a quiz nobody has played yet changes it in place. A quiz that has been played keeps its
questions (its games' reports and answers point at them): the edit makes a new quiz, and the old one
is archived with `replaced_by` pointing at it, so the library shows one quiz with its whole history.
"""
from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row, select, text
from sqlalchemy.orm import Session

from app.core.errors import Conflict, NotFound
from app.core.ids import new_id
from app.quiz.domain import sessions as rules
from app.quiz.models import Question, Quiz
from app.quiz.service import deletion
from app.quiz.service.quizzes import check_images, question_rows, quiz_view

LIST_LIMIT = 500

# A quiz and every archived quiz it replaced, however many edits back.
_HISTORY = """
    WITH RECURSIVE history(id) AS (
        SELECT CAST(:quiz AS uuid)
        UNION SELECT q.id FROM quizzes q JOIN history h ON q.replaced_by = h.id)"""


def list_quizzes(db: Session, owner_id: uuid.UUID) -> list[dict[str, Any]]:
    """The owner's current quizzes, the last changed first, with how often each was played (its
    earlier versions' games included) and the game running now, if any."""
    with db.begin():
        rows = db.execute(text(f"""
            WITH RECURSIVE history(root, id) AS (
                SELECT id, id FROM quizzes WHERE owner_id = :owner AND archived_at IS NULL
                UNION SELECT h.root, q.id FROM quizzes q JOIN history h ON q.replaced_by = h.id)
            SELECT z.id, z.title, z.created_at, z.updated_at,
                   (SELECT count(*) FROM questions WHERE quiz_id = z.id) AS question_count,
                   (SELECT count(*) FROM quiz_sessions s JOIN history h ON s.quiz_id = h.id
                    WHERE h.root = z.id AND s.current_question_id IS NOT NULL) AS games_played,
                   (SELECT jsonb_build_object('id', s.id, 'join_code', s.join_code, 'status', s.status)
                    FROM quiz_sessions s WHERE s.quiz_id = z.id AND s.{rules.LIVE_SQL}
                    ORDER BY s.created_at DESC LIMIT 1) AS live_session
            FROM quizzes z WHERE z.owner_id = :owner AND z.archived_at IS NULL
            ORDER BY z.updated_at DESC, z.id LIMIT :n"""), {"owner": owner_id, "n": LIST_LIMIT}).all()
    return [{"id": str(r.id), "title": r.title, "question_count": r.question_count,
             "games_played": r.games_played, "live_session": r.live_session,
             "created_at": r.created_at.isoformat(), "updated_at": r.updated_at.isoformat()} for r in rows]


def _owned_for_update(db: Session, owner_id: uuid.UUID, quiz_id: uuid.UUID) -> Quiz:
    quiz = db.get(Quiz, quiz_id, with_for_update=True)
    if quiz is None or quiz.owner_id != owner_id or quiz.archived_at is not None:
        raise NotFound("not_found", "no such quiz")
    return quiz


def _sessions_of(db: Session, quiz_id: uuid.UUID) -> list[Row]:
    return db.execute(text(f"""{_HISTORY}
        SELECT s.id, s.quiz_id, s.status, s.join_code, s.created_at, s.ended_at,
               s.current_question_id IS NOT NULL AS played,
               (SELECT count(*) FROM quiz_session_participants p
                WHERE p.quiz_session_id = s.id AND p.removed_at IS NULL) AS player_count
        FROM quiz_sessions s JOIN history h ON s.quiz_id = h.id
        ORDER BY s.created_at DESC"""), {"quiz": quiz_id}).all()


def _refuse_if_live(games: list[Row], doing: str) -> None:
    live = [g for g in games if g.status != rules.ENDED]
    if live:
        raise Conflict("quiz_in_use", f"a game of this quiz is running (PIN {live[0].join_code}): "
                                      f"end it before you {doing}", session_id=str(live[0].id))


def update_quiz(db: Session, owner_id: uuid.UUID, quiz_id: uuid.UUID, title: str,
                questions: list[dict[str, Any]], get_ready_s: int | None = None) -> dict[str, Any]:
    with db.begin():
        quiz = _owned_for_update(db, owner_id, quiz_id)
        games = _sessions_of(db, quiz_id)
        _refuse_if_live(games, "edit it")
        check_images(db, owner_id, questions)
        if not any(g.played and g.quiz_id == quiz_id for g in games):  # nothing points at its questions
            db.execute(text("DELETE FROM questions WHERE quiz_id = :q"), {"q": quiz_id})
            db.execute(text("UPDATE quizzes SET title = :t, get_ready_s = :g, updated_at = clock_timestamp() "
                            "WHERE id = :q"), {"t": title, "g": get_ready_s, "q": quiz_id})
            db.refresh(quiz)
            rows = question_rows(quiz_id, questions)
            db.add_all(rows)
            return {**quiz_view(quiz, rows), "replaces": None}
        successor = Quiz(id=new_id(), owner_id=owner_id, title=title, get_ready_s=get_ready_s)
        db.add(successor)
        db.flush()
        rows = question_rows(successor.id, questions)
        db.add_all(rows)
        db.execute(text("UPDATE quizzes SET archived_at = clock_timestamp(), replaced_by = :new "
                        "WHERE id = :old"),
                   {"new": successor.id, "old": quiz_id})
    return {**quiz_view(successor, rows), "replaces": str(quiz_id)}


def copy_quiz(db: Session, owner_id: uuid.UUID, quiz_id: uuid.UUID) -> dict[str, Any]:
    with db.begin():
        original = _owned_for_update(db, owner_id, quiz_id)
        questions = db.scalars(select(Question).where(Question.quiz_id == quiz_id)
                               .order_by(Question.position))
        copy = Quiz(id=new_id(), owner_id=owner_id, title=_copy_title(original.title),
                    get_ready_s=original.get_ready_s)
        db.add(copy)
        db.flush()
        rows = [Question(id=new_id(), quiz_id=copy.id, position=q.position, text=q.text, choices=q.choices,
                         correct_choice=q.correct_choice, time_limit_s=q.time_limit_s, points=q.points,
                         kind=q.kind, image_id=q.image_id, image_alt=q.image_alt) for q in questions]
        db.add_all(rows)
    return quiz_view(copy, rows)


def _copy_title(title: str, limit: int = 200) -> str:
    suffix = " (copy)"
    return title[:limit - len(suffix)] + suffix


def delete_quiz(db: Session, owner_id: uuid.UUID, quiz_id: uuid.UUID) -> dict[str, Any]:
    """Delete a quiz, its earlier versions, and every game of them with its players and answers."""
    with db.begin():
        _owned_for_update(db, owner_id, quiz_id)
        # Every version, before their games are read: a game started on one now waits, then fails.
        db.execute(text(f"{_HISTORY} SELECT id FROM quizzes WHERE id IN (SELECT id FROM history) "
                        "ORDER BY id FOR UPDATE"), {"quiz": quiz_id})
        games = _sessions_of(db, quiz_id)
        _refuse_if_live(games, "delete it")
        pictures = db.execute(text(f"{_HISTORY} SELECT DISTINCT image_id FROM questions "
                                   "WHERE quiz_id IN (SELECT id FROM history) AND image_id IS NOT NULL"),
                              {"quiz": quiz_id}).scalars().all()
        deleted = deletion.delete_sessions(db, [g.id for g in games])
        versions = db.execute(text(f"{_HISTORY} DELETE FROM quizzes WHERE id IN (SELECT id FROM history)"),
                              {"quiz": quiz_id}).rowcount
        deletion.delete_unused_images(db, among=pictures)  # its pictures, unless a copy shows them too
    return {"id": str(quiz_id), "deleted": True, "versions": versions, "sessions": deleted}


def quiz_sessions(db: Session, owner_id: uuid.UUID, quiz_id: uuid.UUID) -> list[dict[str, Any]]:
    """The games of a quiz (its earlier versions' included), the newest first."""
    with db.begin():
        quiz = db.get(Quiz, quiz_id)
        if quiz is None or quiz.owner_id != owner_id:
            raise NotFound("not_found", "no such quiz")
        games = _sessions_of(db, quiz_id)
    return [{"id": str(g.id), "status": g.status, "join_code": g.join_code, "player_count": g.player_count,
             "played": g.played, "created_at": g.created_at.isoformat(),
             "ended_at": g.ended_at.isoformat() if g.ended_at else None} for g in games]
