"""Live sessions: finding, joining, answering, and the host's controls."""
from __future__ import annotations

import uuid

from flask import Blueprint, Response, current_app, jsonify

from app.core.errors import NotFound
from app.quiz.service import answers, deletion, reports, roster, sessions
from app.web.api.core import (
    current_principal,
    endpoint,
    parse_body,
    parse_optional_body,
    parse_query,
    parse_uuid,
)
from app.web.api.schemas import AnswerBody, ExtendBody, JoinBody, JoinCodeQuery, LockBody, RejoinBody
from app.web.extensions import answer_batcher, get_db, rate_limits, room_hub
from app.web.ratelimits import limit

bp = Blueprint("sessions", __name__, url_prefix="/api/v1/sessions")


@endpoint(bp, "", methods=["GET"], summary="Find a live session by its join code", query=JoinCodeQuery,
          limits=("join_per_address", "join_per_user"),
          responses={200: "what joining needs: id, status, player and question counts",
                     404: "no live session has that code", 410: "session_ended: that game is over"})
def find_session():
    query = parse_query(JoinCodeQuery)
    misses = (limit("join_misses_per_address"), limit("join_misses_per_user"))
    budgets = rate_limits()
    budgets.check(*misses)
    db = get_db()
    try:
        session_id = sessions.find_by_join_code(db, query.join_code)
    except NotFound:
        budgets.hit(*misses)
        raise
    return jsonify(sessions.describe_session(db, session_id, current_principal().user_id))


@endpoint(bp, "/<session_id>", methods=["GET"], summary="A session's state and, for its host and players, "
          "its current question", responses={200: "the session", 404: "no such session"})
def get_session(session_id: str):
    return jsonify(sessions.describe_session(get_db(), parse_uuid(session_id, "session"),
                                             current_principal().user_id))


@endpoint(bp, "/<session_id>/join", methods=["POST"], summary="Join a session as a player", body=JoinBody,
          body_required=False, limits=("join_per_address", "join_per_user"),
          responses={201: "the participant, with the rejoin code their screen shows",
                     403: "host_cannot_join (the host runs the session) or removed (by the host)",
                     404: "no such session",
                     409: "already_joined (with participant_id), nickname_taken, room_locked or "
                          "session_ended"})
def join(session_id: str):
    body = parse_optional_body(JoinBody)
    joined = sessions.join_session(get_db(), current_principal().user_id, parse_uuid(session_id, "session"),
                                   body.nickname)
    return jsonify(joined), 201


@endpoint(bp, "/<session_id>/answers", methods=["POST"], summary="Answer the open question", body=AnswerBody,
          responses={201: "the answer was recorded (the receipt reveals nothing about its points)",
                     200: "the same answer was already recorded: the original receipt (a safe retry)",
                     403: "not_joined or removed", 404: "no such session",
                     409: "question_closed, not_open_yet (get ready), invalid_question (not the open one), "
                          "or already_answered with another choice (the recorded receipt in error.answer)",
                     422: "invalid_choice: not one of the question's choices",
                     503: "not recorded; send it again", 504: "outcome_unknown: send the same answer again"})
def answer(session_id: str):
    session = parse_uuid(session_id, "session")
    body = parse_body(AnswerBody)
    receipt = answer_batcher().submit(answers.AnswerRequest(
        current_principal().user_id, session, parse_uuid(body.question_id, "question"), body.choice))
    return jsonify(receipt.view()), 200 if receipt.replayed else 201


@endpoint(bp, "/<session_id>/rejoin", methods=["POST"], summary="Take your place back from another device "
          "(your nickname and the rejoin code your first device showed)", body=RejoinBody,
          limits=("join_per_address", "join_per_user"),
          responses={200: "the place, now this account's, with a new rejoin code",
                     404: "no such session, or no_such_player with that nickname and code",
                     409: "already_joined (this account plays already) or session_ended"})
def rejoin(session_id: str):
    body = parse_body(RejoinBody)
    misses = (limit("join_misses_per_address"), limit("join_misses_per_user"))
    budgets = rate_limits()
    budgets.check(*misses)
    session = parse_uuid(session_id, "session")
    try:
        place = sessions.rejoin_session(get_db(), current_principal().user_id, session, body.nickname,
                                        body.rejoin_code)
    except NotFound:
        budgets.hit(*misses)  # a guess of someone's code counts like a join-code miss
        raise
    room_hub().supersede(session, uuid.UUID(place.pop("previous_user_id")))
    return jsonify(place)


@endpoint(bp, "/<session_id>/lock", methods=["POST"], summary="Lock the room, or open it again (host)",
          body=LockBody, responses={200: "the session's id and whether it is locked", 403: "not_host",
                                    404: "no such session"})
def lock(session_id: str):
    body = parse_body(LockBody)
    return jsonify(roster.set_locked(get_db(), current_principal().user_id,
                                     parse_uuid(session_id, "session"), body.locked))


@endpoint(bp, "/<session_id>/participants", methods=["GET"], summary="The players (host), removed ones too: "
          "score, whether they answered the open question, whether a device of theirs is connected, "
          "rejoin code", responses={
              200: "players (by nickname, at most 500) and whether there are more; connected is null "
                   "when it cannot be told now", 403: "not_host", 404: "no such session"})
def list_players(session_id: str):
    sid = parse_uuid(session_id, "session")
    listed = roster.list_players(get_db(), current_principal().user_id, sid)
    here = room_hub().present(sid)  # heard on a room socket within WS_SILENT_CLOSE_S, by any process
    for player in listed["players"]:
        player["connected"] = None if here is None else player["participant_id"] in here
    return jsonify(listed)


@endpoint(bp, "/<session_id>/participants/<participant_id>", methods=["DELETE"],
          summary="Remove a player (host), at any time: off the board, their answers stop counting, and "
          "their account cannot join or answer until put back", responses={
              200: "removed, with the players left", 403: "not_host", 404: "no such session or player"})
def remove_participant(session_id: str, participant_id: str):
    return jsonify(roster.remove_participant(get_db(), current_principal().user_id,
                                             parse_uuid(session_id, "session"),
                                             parse_uuid(participant_id, "participant")))


@endpoint(bp, "/<session_id>/participants/<participant_id>/restore", methods=["POST"],
          summary="Put a removed player back (host) while the game runs, with the points they had",
          responses={200: "restored, with the players now in", 403: "not_host",
                     404: "no such session, or no removed player with that id", 409: "session_ended"})
def restore_participant(session_id: str, participant_id: str):
    return jsonify(roster.restore_participant(get_db(), current_principal().user_id,
                                              parse_uuid(session_id, "session"),
                                              parse_uuid(participant_id, "participant")))


@endpoint(bp, "/<session_id>/questions/next", methods=["POST"], summary="Show the next question (host); its "
          "answers open after the quiz's get_ready_s (QUESTION_GET_READY_S when it has none)", responses={
              200: "the question: shown_at, opened_at (answers open) and deadline", 403: "not_host",
              404: "no such session", 409: "no_more_questions or session_ended"})
def next_question(session_id: str):
    opened = sessions.open_next_question(get_db(), current_principal().user_id,
                                         parse_uuid(session_id, "session"),
                                         get_ready_s=current_app.config["LIVEQUIZ"].question_get_ready_s)
    return jsonify(opened)


@endpoint(bp, "/<session_id>/questions/close", methods=["POST"],
          summary="Close the open question early (host)",
          responses={200: "the closed question with its answer counts", 403: "not_host",
                     404: "no such session", 409: "no_open_question"})
def close_question(session_id: str):
    closed = sessions.close_question(get_db(), parse_uuid(session_id, "session"),
                                     host_id=current_principal().user_id)
    return jsonify(closed)


@endpoint(bp, "/<session_id>/questions/extend", methods=["POST"], summary="More time for the open question "
          "(host): its deadline moves `seconds` later", body=ExtendBody, body_required=False, responses={
              200: "the new deadline (question_extended); replayed: the deadline had moved from the one "
                   "sent, so nothing changed (a retry)", 403: "not_host", 404: "no such session",
              409: "no_open_question, question_closed (its time is up) or too_much_time (max_extra_s)"})
def extend_question(session_id: str):
    body = parse_optional_body(ExtendBody)
    return jsonify(sessions.extend_question(
        get_db(), current_principal().user_id, parse_uuid(session_id, "session"), body.seconds, body.deadline,
        max_extra_s=current_app.config["LIVEQUIZ"].question_max_extra_s))


@endpoint(bp, "/<session_id>/end", methods=["POST"], summary="End the session (host)",
          responses={200: "the ended session", 403: "not_host", 404: "no such session", 409: "session_ended"})
def end(session_id: str):
    return jsonify(sessions.end_session(get_db(), current_principal().user_id,
                                        parse_uuid(session_id, "session")))


@endpoint(bp, "/<session_id>", methods=["DELETE"], summary="Delete a game with its players and answers "
          "(host; in its lobby or once ended)",
          responses={200: "deleted", 403: "not_host", 404: "no such session",
                     409: "session_live: end it first"})
def delete(session_id: str):
    return jsonify(deletion.delete_session(get_db(), current_principal().user_id,
                                           parse_uuid(session_id, "session")))


@endpoint(bp, "/<session_id>/report", methods=["GET"], summary="A game's report (host): per question the "
          "correct rate, distribution and average time, the hardest first; per player score, correct "
          "answers, average answer time and their answer to each asked question",
          responses={200: "session, questions, hardest_first, players", 403: "not_host",
                     404: "no such session"})
def report(session_id: str):
    return jsonify(reports.session_report(get_db(), current_principal().user_id,
                                          parse_uuid(session_id, "session")))


@endpoint(bp, "/<session_id>/report.json", methods=["GET"], summary="The report as a JSON file to keep "
          "(host), named after the quiz and the day", responses={200: "the report, as an attachment",
                                                                 403: "not_host", 404: "no such session"})
def report_json(session_id: str):
    found = reports.session_report(get_db(), current_principal().user_id, parse_uuid(session_id, "session"))
    return _download(jsonify(found), reports.report_filename(found, "json"))


@endpoint(bp, "/<session_id>/report.csv", methods=["GET"], summary="The report as CSV (host); cells a "
          "spreadsheet would run as a formula are escaped", responses={200: "text/csv", 403: "not_host",
                                                                       404: "no such session"})
def report_csv(session_id: str):
    found = reports.session_report(get_db(), current_principal().user_id, parse_uuid(session_id, "session"))
    return _download(Response(reports.report_csv(found), mimetype="text/csv"),
                     reports.report_filename(found, "csv"))


def _download(response: Response, filename: str) -> Response:
    """A report saved as a file: the browser downloads it, and no cache keeps a copy of players' answers."""
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response
