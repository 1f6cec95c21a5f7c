"""Writing and reading quizzes."""
from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Question, Quiz
from app.services.errors import NotFound


def create_quiz(db: Session, owner_id: uuid.UUID, title: str, questions: list[dict[str, Any]]) -> dict[str, Any]:
    quiz = Quiz(id=uuid.uuid4(), owner_id=owner_id, title=title)
    rows = [Question(id=uuid.uuid4(), quiz_id=quiz.id, position=position, **question)
            for position, question in enumerate(questions)]
    with db.begin():
        db.add(quiz)
        db.flush()
        db.add_all(rows)
    return quiz_view(quiz, rows)


def get_owned_quiz(db: Session, owner_id: uuid.UUID, quiz_id: uuid.UUID) -> dict[str, Any]:
    with db.begin():
        quiz = db.scalar(select(Quiz).where(Quiz.id == quiz_id, Quiz.owner_id == owner_id))
        if quiz is None:
            raise NotFound("not_found", "no such quiz")
        rows = db.scalars(select(Question).where(Question.quiz_id == quiz_id).order_by(Question.position)).all()
    return quiz_view(quiz, list(rows))


def quiz_view(quiz: Quiz, questions: list[Question]) -> dict[str, Any]:
    return {
        "id": str(quiz.id),
        "title": quiz.title,
        "owner_id": str(quiz.owner_id),
        "questions": [{
            "id": str(q.id), "position": q.position, "text": q.text, "choices": q.choices,
            "correct_choice": q.correct_choice, "time_limit_s": q.time_limit_s, "points": q.points,
        } for q in questions],
    }
