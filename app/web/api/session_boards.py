"""Live leaderboards of a session, read from Redis (rebuilt from PostgreSQL when missing)."""
from __future__ import annotations

from flask import Blueprint, jsonify

from app.quiz.board import reads
from app.web.api.core import current_principal, endpoint, parse_query, parse_uuid
from app.web.api.schemas import AroundQuery, LeaderboardQuery
from app.web.extensions import get_db, redis_client

bp = Blueprint("session_boards", __name__, url_prefix="/api/v1/sessions")


@endpoint(bp, "/<session_id>/leaderboard", methods=["GET"], summary="A page of the session's leaderboard",
          query=LeaderboardQuery,
          responses={200: "version, total_players and the page's entries by rank", 400: "invalid_query",
                     403: "not_in_session", 404: "no such session"})
def leaderboard(session_id: str):
    query = parse_query(LeaderboardQuery)
    session = parse_uuid(session_id, "session")
    db = get_db()
    reads.check_reader(db, session, current_principal().user_id)
    return jsonify(reads.read_page(db, redis_client(), session, query.limit, query.offset))


@endpoint(bp, "/<session_id>/leaderboard/<participant_id>", methods=["GET"],
          summary="A player's rank and the players around it", query=AroundQuery,
          responses={200: "version, rank, score and the entries around", 400: "invalid_query",
                     403: "not_in_session", 404: "no such session or participant"})
def leaderboard_around(session_id: str, participant_id: str):
    query = parse_query(AroundQuery)
    session = parse_uuid(session_id, "session")
    participant = parse_uuid(participant_id, "participant")
    db = get_db()
    reads.check_reader(db, session, current_principal().user_id, participant)
    return jsonify(reads.read_around(db, redis_client(), session, participant, query.around))
