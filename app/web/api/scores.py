"""Score writes of the leaderboard service (game servers with an API key or their owner's token, and
players reporting their own actions), and a player's boards and activity."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from app.core.errors import ServiceError
from app.leaderboards.service.players import activity_of, boards_of
from app.leaderboards.submissions import Authority, ScoreBody, ScoreRequest, ScoreResult, Submission
from app.web.api.core import current_principal, endpoint, parse_body, parse_query
from app.web.api.schemas import ActionBody, ActivityQuery, ScoreBatchBody
from app.web.extensions import board_reader, engine, score_batcher

bp = Blueprint("scores", __name__, url_prefix="/api/v1")

_RESULT = ("{leaderboard_id, period, player_id, outcome: changed|unchanged, score, previous_score, rank "
           "(null when the board has not shown it within SCORE_RANK_WAIT_MS)}")


def _submit(submissions: list[Submission], authority: Authority,
            source: str) -> list[ScoreResult | ServiceError]:
    """One transaction for the request's submissions, shared with the requests that arrive beside it."""
    return score_batcher().submit(ScoreRequest(tuple(submissions), authority, source))


def _with_ranks(results: list[ScoreResult | ServiceError]) -> list[dict]:
    """Each result's view, with its rank once the board shows the write: SCORE_RANK_WAIT_MS at most, one
    deadline for every item of a batch (the waits of the whole process are read together: reads.py)."""
    wait_s = current_app.config["LIVEQUIZ"].score_rank_wait_ms / 1000
    ranks = board_reader().ranks_when_shown([r for r in results if isinstance(r, ScoreResult)], wait_s)
    return [{**r.view(), "rank": ranks.get((r.leaderboard_id, r.player_id))} if isinstance(r, ScoreResult)
            else {"error": {"code": r.code, "message": r.message, **r.extra}} for r in results]


def _one(result: ScoreResult | ServiceError):
    if isinstance(result, ServiceError):
        raise result
    return jsonify(_with_ranks([result])[0]), 200 if result.replayed else 201


def _submission(body: ScoreBody) -> Submission:
    return Submission(body.leaderboard_id, body.player_id, body.score, body.display_name, body.metadata,
                      body.submission_id)


@endpoint(bp, "/scores", methods=["POST"], summary="Submit a score (an API key or the board owner's token)",
          body=ScoreBody, api_keys=True,
          responses={201: _RESULT, 200: "a retry of this submission_id: the original result",
                     403: "not_owner", 404: "no such board",
                     409: "submission_conflict: the submission_id was used for another submission",
                     422: "score_overflow: an increment would leave ±(2^53 - 1)"})
def submit_score():
    body = parse_body(ScoreBody)
    return _one(_submit([_submission(body)], Authority(owner_id=current_principal().user_id), "http")[0])


@endpoint(bp, "/scores/batch", methods=["POST"], summary="Submit many scores in one transaction",
          body=ScoreBatchBody, api_keys=True,
          responses={200: "results: one result or error per score, in order"})
def submit_batch():
    body = parse_body(ScoreBatchBody)
    results = _submit([_submission(s) for s in body.scores], Authority(owner_id=current_principal().user_id),
                      "batch")
    return jsonify(results=_with_ranks(results))


@endpoint(bp, "/games/<board_id>/scores", methods=["POST"], summary="Report an action of your own "
          "(a player's token; increment boards with self_report_max)", body=ActionBody,
          responses={201: _RESULT, 200: "a retry of this submission_id: the original result",
                     403: "self_report_not_allowed", 404: "no such board", 409: "submission_conflict",
                     422: "invalid_score: above the board's self_report_max; score_overflow"})
def report_action(board_id: str):
    body = parse_body(ActionBody)
    principal = current_principal()  # never an API key: the route does not take them (credential_not_allowed)
    submission = Submission(board_id, str(principal.user_id), body.score, submission_id=body.submission_id,
                            action=body.action)
    return _one(_submit([submission], Authority(self_report=True), "self_report")[0])


@endpoint(bp, "/players/<player_id>/boards", methods=["GET"], summary="Every board a player is on, with "
          "rank and score", auth=False, responses={200: "boards: the player's standings"})
def player_boards(player_id: str):
    return jsonify(player_id=player_id, boards=boards_of(engine(), board_reader(), player_id))


@endpoint(bp, "/players/<player_id>/activity", methods=["GET"], summary="A player's reported actions, "
          "newest first (the player, or the owner of the boards)", query=ActivityQuery,
          responses={200: "activity: board, action, points, at"})
def player_activity(player_id: str):
    query = parse_query(ActivityQuery)
    return jsonify(player_id=player_id, activity=activity_of(engine(), player_id,
                                                             current_principal().user_id, query.limit))
