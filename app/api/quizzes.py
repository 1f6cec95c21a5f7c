"""Quizzes, written by registered users."""
from __future__ import annotations

from flask import Blueprint, jsonify

from app.api.core import current_principal, endpoint, parse_body, parse_uuid, require_registered
from app.api.schemas import QuizBody
from app.extensions import get_db
from app.services import quizzes, sessions

bp = Blueprint("quizzes", __name__, url_prefix="/api/v1/quizzes")


@endpoint(bp, "", methods=["POST"], summary="Write a quiz", body=QuizBody,
          responses={201: "the quiz with question ids and positions", 403: "guests cannot write quizzes"})
def create_quiz():
    require_registered("write quizzes")
    body = parse_body(QuizBody)
    quiz = quizzes.create_quiz(get_db(), current_principal().user_id, body.title,
                               [q.model_dump() for q in body.questions])
    return jsonify(quiz), 201


@endpoint(bp, "/<quiz_id>", methods=["GET"], summary="Read one of your quizzes",
          responses={200: "the quiz", 403: "registered_users_only: guests have no quizzes",
                     404: "no such quiz of yours"})
def get_quiz(quiz_id: str):
    require_registered("write quizzes")
    return jsonify(quizzes.get_owned_quiz(get_db(), current_principal().user_id, parse_uuid(quiz_id, "quiz")))


@endpoint(bp, "/<quiz_id>/sessions", methods=["POST"], summary="Open a live session of your quiz",
          responses={201: "the session in its lobby", 403: "registered_users_only: guests have no quizzes",
                     404: "no such quiz of yours"})
def create_session(quiz_id: str):
    require_registered("write quizzes")
    session = sessions.create_session(get_db(), current_principal().user_id, parse_uuid(quiz_id, "quiz"))
    return jsonify(session), 201
