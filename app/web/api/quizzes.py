"""Quizzes, written by registered users."""
from __future__ import annotations

from flask import Blueprint, jsonify

from app.quiz.service import library, quizzes, sessions
from app.web.api.core import current_principal, endpoint, parse_body, parse_uuid, require_registered
from app.web.api.schemas import QuizBody
from app.web.extensions import get_db

bp = Blueprint("quizzes", __name__, url_prefix="/api/v1/quizzes")


@endpoint(bp, "", methods=["POST"], summary="Write a quiz", body=QuizBody,
          responses={201: "the quiz with question ids and positions", 403: "guests cannot write quizzes",
                     422: "invalid_image: an image_id that is not a picture of yours"})
def create_quiz():
    require_registered("write quizzes")
    body = parse_body(QuizBody)
    quiz = quizzes.create_quiz(get_db(), current_principal().user_id, body.title,
                               [q.model_dump() for q in body.questions], body.get_ready_s)
    return jsonify(quiz), 201


@endpoint(bp, "", methods=["GET"], summary="Your quiz library: your quizzes, the last changed first",
          responses={200: "quizzes: id, title, question_count, games_played, live_session, created_at, "
                          "updated_at",
                     403: "registered_users_only: guests have no quizzes"})
def list_quizzes():
    require_registered("write quizzes")
    return jsonify({"quizzes": library.list_quizzes(get_db(), current_principal().user_id)})


@endpoint(bp, "/<quiz_id>", methods=["PUT"], summary="Change a quiz: in place if it was never played, else "
          "as a new version (the played one is archived, its games' reports keep their questions)",
          body=QuizBody,
          responses={200: "the quiz; `replaces` names the version it archived, if any",
                     403: "registered_users_only", 404: "no such quiz of yours",
                     409: "quiz_in_use: a game of it is running",
                     422: "invalid_image: an image_id that is not a picture of yours"})
def update_quiz(quiz_id: str):
    require_registered("write quizzes")
    body = parse_body(QuizBody)
    return jsonify(library.update_quiz(get_db(), current_principal().user_id, parse_uuid(quiz_id, "quiz"),
                                       body.title, [q.model_dump() for q in body.questions],
                                       body.get_ready_s))


@endpoint(bp, "/<quiz_id>", methods=["DELETE"], summary="Delete a quiz with every game of it, their players "
          "and answers", responses={200: "deleted: how many versions and games went",
                                    403: "registered_users_only", 404: "no such quiz of yours",
                                    409: "quiz_in_use: a game of it is running"})
def delete_quiz(quiz_id: str):
    require_registered("write quizzes")
    return jsonify(library.delete_quiz(get_db(), current_principal().user_id, parse_uuid(quiz_id, "quiz")))


@endpoint(bp, "/<quiz_id>/copy", methods=["POST"], summary="Duplicate a quiz",
          responses={201: "the copy", 403: "registered_users_only", 404: "no such quiz of yours"})
def copy_quiz(quiz_id: str):
    require_registered("write quizzes")
    return jsonify(library.copy_quiz(get_db(), current_principal().user_id, parse_uuid(quiz_id, "quiz"))), 201


@endpoint(bp, "/<quiz_id>/sessions", methods=["GET"], summary="The games of a quiz (its earlier versions' "
          "too), the newest first", responses={200: "sessions", 403: "registered_users_only",
                                             404: "no such quiz of yours"})
def list_sessions(quiz_id: str):
    require_registered("write quizzes")
    return jsonify({"sessions": library.quiz_sessions(get_db(), current_principal().user_id,
                                                      parse_uuid(quiz_id, "quiz"))})


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
