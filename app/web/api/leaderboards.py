"""The leaderboard service's boards and reads: boards are created and changed by their owners, and
read by anyone (rate-limited like every public read)."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from app.leaderboards.service import boards
from app.leaderboards.service.players import find_by_name
from app.leaderboards.service.scores import remove_player
from app.web.api.core import current_principal, endpoint, parse_body, parse_query, require_registered
from app.web.api.schemas import (
    AroundBoardQuery,
    BoardBody,
    BoardListQuery,
    BoardPatch,
    PeriodQuery,
    PlayerNameQuery,
    RangeQuery,
    TopQuery,
)
from app.web.extensions import board_reader, engine

bp = Blueprint("leaderboards", __name__, url_prefix="/api/v1/leaderboards")

_BOARD = {404: "no such board"}
_OWNER = {403: "not_owner", 404: "no such board"}


def _final_top() -> int:
    return current_app.config["LIVEQUIZ"].leaderboard_final_top


@endpoint(bp, "", methods=["POST"], summary="Create a board (registered users; you own it)", body=BoardBody,
          responses={201: "the board with its current period, prev_reset and next_reset",
                     403: "registered_users_only", 409: "board_exists (ids are case-insensitive)",
                     422: "invalid_timezone: a time zone this server's PostgreSQL does not know"})
def create_board():
    require_registered("create boards")
    body = parse_body(BoardBody)
    board = boards.create_board(engine(), current_principal().user_id, body.model_dump())
    return jsonify(board), 201


@endpoint(bp, "", methods=["GET"], summary="A page of boards, by id", query=BoardListQuery, auth=False,
          responses={200: "boards, and `next`: the `after` of the following page"})
def list_boards():
    query = parse_query(BoardListQuery)
    return jsonify(boards.list_boards(engine(), after=query.after, limit=query.limit))


@endpoint(bp, "/<board_id>", methods=["GET"], summary="A board, its current period and its resets",
          auth=False, responses={200: "the board", **_BOARD})
def get_board(board_id: str):
    return jsonify(boards.get_board(engine(), board_id))


@endpoint(bp, "/<board_id>", methods=["PATCH"], summary="Rename a board or change its max_entries (owner)",
          body=BoardPatch, responses={200: "the board", **_OWNER})
def update_board(board_id: str):
    body = parse_body(BoardPatch)
    changes = body.model_dump(exclude_unset=True)
    board = boards.update_board(engine(), current_principal().user_id, board_id, changes)
    board_reader().forget(board_id)
    return jsonify(board)


@endpoint(bp, "/<board_id>", methods=["DELETE"], summary="Delete a board with its scores (owner)",
          responses={204: "deleted; its id is never used again", 403: "not_owner or board_reserved",
                     404: "no such board"})
def delete_board(board_id: str):
    boards.delete_board(engine(), current_principal().user_id, board_id)
    board_reader().forget(board_id)
    return "", 204


@endpoint(bp, "/<board_id>/reset", methods=["POST"], summary="Close the current period now and open a "
          "new one (owner)", responses={200: "the board with its new current period", **_OWNER})
def reset_board(board_id: str):
    board = boards.reset_board(engine(), current_principal().user_id, board_id, final_top=_final_top())
    board_reader().forget(board_id)
    return jsonify(board)


@endpoint(bp, "/<board_id>/periods", methods=["GET"], summary="A board's periods, newest first", auth=False,
          responses={200: "the periods; past ones stay readable with ?period=", **_BOARD})
def list_periods(board_id: str):
    return jsonify(periods=boards.list_periods(engine(), board_id))


@endpoint(bp, "/<board_id>/top", methods=["GET"], summary="The top of a board", query=TopQuery, auth=False,
          responses={200: "version, total and the entries by rank", **_BOARD})
def top(board_id: str):
    query = parse_query(TopQuery)
    return jsonify(board_reader().page(board_id, period=query.period, offset=0, limit=query.limit))


@endpoint(bp, "/<board_id>/range", methods=["GET"], summary="Ranks start..end (1-based, inclusive), or the "
          "page after a cursor", query=RangeQuery, auth=False,
          responses={200: "version, total, the entries, and next_cursor for the page after", **_BOARD,
                     422: "invalid_cursor: a cursor this service did not give"})
def rank_range(board_id: str):
    query = parse_query(RangeQuery)
    reader = board_reader()
    if query.cursor is not None:
        return jsonify(reader.page_after(board_id, query.cursor, query.limit))
    return jsonify(reader.page(board_id, period=query.period, offset=query.start - 1,
                               limit=query.end - query.start + 1))


@endpoint(bp, "/<board_id>/around/<player_id>", methods=["GET"], summary="A player and the ranks around them",
          query=AroundBoardQuery, auth=False,
          responses={200: "the player's standing and min(2 range + 1, total) entries around it",
                     404: "no such board, or the player has no score on it"})
def around(board_id: str, player_id: str):
    query = parse_query(AroundBoardQuery)
    return jsonify(board_reader().player(board_id, player_id, period=query.period, around=query.range))


@endpoint(bp, "/<board_id>/players", methods=["GET"], summary="Players found by the name they show",
          query=PlayerNameQuery, auth=False,
          responses={200: "players: up to 10 {player_id, display_name} whose display name is `name` in any "
                          "case, or whose id is `name`, by id", **_BOARD})
def players_named(board_id: str):
    query = parse_query(PlayerNameQuery)
    period = board_reader().period(board_id, query.period)
    return jsonify(players=find_by_name(engine(), board_id, period, query.name, limit=10))


@endpoint(bp, "/<board_id>/player/<player_id>", methods=["GET"],
          summary="A player's rank, score and top percent", query=PeriodQuery, auth=False,
          responses={200: "the standing (rank null beyond max_entries)",
                     404: "no such board, or the player has no score on it"})
def player(board_id: str, player_id: str):
    query = parse_query(PeriodQuery)
    return jsonify(board_reader().player(board_id, player_id, period=query.period))


@endpoint(bp, "/<board_id>/player/<player_id>", methods=["DELETE"],
          summary="Take a player off the board (owner)",
          responses={204: "removed", 403: "not_owner",
                     404: "no such board, or the player has no score on it"})
def delete_player(board_id: str, player_id: str):
    remove_player(engine(), current_principal().user_id, board_id, player_id)
    return "", 204


@endpoint(bp, "/<board_id>/stats", methods=["GET"],
          summary="Count, min, max, sum, mean and percentiles of a board", query=PeriodQuery, auth=False,
          responses={200: "the statistics of the ranked entries (p50/p90/p99: PostgreSQL's percentile_disc)",
                     **_BOARD})
def stats(board_id: str):
    query = parse_query(PeriodQuery)
    return jsonify(board_reader().stats(board_id, period=query.period))
