"""Writing and reading quizzes."""
from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.core.errors import NotFound, Unprocessable
from app.core.ids import new_id
from app.quiz.models import Question, Quiz


def image_url(image_id: uuid.UUID | None) -> str | None:
    return None if image_id is None else f"/images/{image_id}"


def check_images(db: Session, owner_id: uuid.UUID, questions: list[dict[str, Any]]) -> None:
    """Every picture a question shows must be one its owner uploaded."""
    wanted = {uuid.UUID(q["image_id"]) for q in questions if q.get("image_id")}
    if not wanted:
        return
    found = set(db.execute(text("SELECT id FROM question_images WHERE id = ANY(:ids) AND owner_id = :owner"),
                           {"ids": list(wanted), "owner": owner_id}).scalars())
    if wanted - found:
        raise Unprocessable("invalid_image", "image_id: upload the picture first (POST /api/v1/images)")


def question_rows(quiz_id: uuid.UUID, questions: list[dict[str, Any]]) -> list[Question]:
    return [Question(id=new_id(), quiz_id=quiz_id, position=position,
                     **{**q, "image_id": uuid.UUID(q["image_id"]) if q.get("image_id") else None,
                        "image_alt": (q.get("image_alt") or None) if q.get("image_id") else None})
            for position, q in enumerate(questions)]


def create_quiz(db: Session, owner_id: uuid.UUID, title: str, questions: list[dict[str, Any]],
                get_ready_s: int | None = None) -> dict[str, Any]:
    quiz = Quiz(id=new_id(), owner_id=owner_id, title=title, get_ready_s=get_ready_s)
    with db.begin():
        check_images(db, owner_id, questions)
        rows = question_rows(quiz.id, questions)
        db.add(quiz)
        db.flush()
        db.add_all(rows)
    return quiz_view(quiz, rows)


def get_owned_quiz(db: Session, owner_id: uuid.UUID, quiz_id: uuid.UUID) -> dict[str, Any]:
    with db.begin():
        quiz = db.scalar(select(Quiz).where(Quiz.id == quiz_id, Quiz.owner_id == owner_id))
        if quiz is None:
            raise NotFound("not_found", "no such quiz")
        rows = db.scalars(select(Question).where(Question.quiz_id == quiz_id)
                          .order_by(Question.position)).all()
    return quiz_view(quiz, list(rows))


def quiz_view(quiz: Quiz, questions: list[Question]) -> dict[str, Any]:
    return {
        "id": str(quiz.id),
        "title": quiz.title,
        "owner_id": str(quiz.owner_id),
        "get_ready_s": quiz.get_ready_s,
        "questions": [{
            "id": str(q.id), "position": q.position, "kind": q.kind or "choice", "text": q.text,
            "choices": q.choices, "correct_choice": q.correct_choice, "time_limit_s": q.time_limit_s,
            "points": q.points, "image_id": str(q.image_id) if q.image_id else None,
            "image_url": image_url(q.image_id), "image_alt": q.image_alt,
        } for q in questions],
    }
