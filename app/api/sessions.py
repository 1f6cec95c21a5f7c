"""Live sessions: finding, joining, answering, and the host's controls."""
from __future__ import annotations

from flask import Blueprint, jsonify

from app.api.core import current_principal, endpoint, parse_body, parse_optional_body, parse_query, parse_uuid
from app.ratelimits import limit
from app.services.errors import NotFound
from app.api.schemas import AnswerBody, JoinBody, JoinCodeQuery
from app.extensions import get_db, runtime
from app.services import answers, sessions

bp = Blueprint("sessions", __name__, url_prefix="/api/v1/sessions")


@endpoint(bp, "", methods=["GET"], summary="Find a live session by its join code", query=JoinCodeQuery,
          limits=("join_per_address", "join_per_user"),
          responses={200: "what joining needs: id, status, player and question counts",
                     404: "no live session has that code"})
def find_session():
    query = parse_query(JoinCodeQuery)
    misses = (limit("join_misses_per_address"), limit("join_misses_per_user"))
    rate_limits = runtime().rate_limits
    rate_limits.check(*misses)
    db = get_db()
    try:
        session_id = sessions.find_by_join_code(db, query.join_code)
    except NotFound:
        rate_limits.hit(*misses)
        raise
    return jsonify(sessions.describe_session(db, session_id, current_principal().user_id))


@endpoint(bp, "/<session_id>", methods=["GET"], summary="A session's state and, for its host and players, "
          "its current question", responses={200: "the session", 404: "no such session"})
def get_session(session_id: str):
    return jsonify(sessions.describe_session(get_db(), parse_uuid(session_id, "session"),
                                             current_principal().user_id))


@endpoint(bp, "/<session_id>/join", methods=["POST"], summary="Join a session as a player", body=JoinBody,
          body_required=False, limits=("join_per_address", "join_per_user"),
          responses={201: "the participant", 403: "host_cannot_join: the host runs the session",
                     404: "no such session", 409: "already_joined (with participant_id) or session_ended"})
def join(session_id: str):
    body = parse_optional_body(JoinBody)
    joined = sessions.join_session(get_db(), current_principal().user_id, parse_uuid(session_id, "session"),
                                   body.nickname)
    return jsonify(joined), 201


@endpoint(bp, "/<session_id>/answers", methods=["POST"], summary="Answer the open question", body=AnswerBody,
          responses={201: "the answer was recorded (the receipt reveals nothing about its points)",
                     200: "the same answer was already recorded: the original receipt (a safe retry)",
                     403: "not_joined", 404: "no such session",
                     409: "question_closed, or already_answered with another choice (the recorded receipt in "
                          "error.answer)",
                     503: "not recorded; send it again", 504: "outcome_unknown: send the same answer again"})
def answer(session_id: str):
    session = parse_uuid(session_id, "session")
    body = parse_body(AnswerBody)
    receipt = runtime().answer_batcher.submit(answers.AnswerRequest(
        current_principal().user_id, session, parse_uuid(body.question_id, "question"), body.choice))
    return jsonify(receipt.view()), 200 if receipt.replayed else 201


@endpoint(bp, "/<session_id>/questions/next", methods=["POST"], summary="Open the next question (host)",
          responses={200: "the opened question", 403: "not_host", 404: "no such session",
                     409: "no_more_questions or session_ended"})
def next_question(session_id: str):
    opened = sessions.open_next_question(get_db(), current_principal().user_id, parse_uuid(session_id, "session"))
    return jsonify(opened)


@endpoint(bp, "/<session_id>/questions/close", methods=["POST"], summary="Close the open question early (host)",
          responses={200: "the closed question with its answer counts", 403: "not_host", 404: "no such session",
                     409: "no_open_question"})
def close_question(session_id: str):
    closed = sessions.close_question(get_db(), parse_uuid(session_id, "session"),
                                     host_id=current_principal().user_id)
    return jsonify(closed)


@endpoint(bp, "/<session_id>/end", methods=["POST"], summary="End the session (host)",
          responses={200: "the ended session", 403: "not_host", 404: "no such session", 409: "session_ended"})
def end(session_id: str):
    return jsonify(sessions.end_session(get_db(), current_principal().user_id, parse_uuid(session_id, "session")))
