"""The executable GraphQL schema: schema.graphql bound (ariadne) to resolvers that call the same service
functions as the REST API, with the same checks.

Resolvers get `info.context`, a `Context`: who is asking (their address and credential), the
request's reader and the process's score writes. Each mutation is admitted as its REST twin
(guards.py: the same credential rule and budgets). A ServiceError or ApiError raised on the way
becomes a GraphQL error whose `extensions.code` is the REST error code (execution.py formats it).
"""
from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ariadne import MutationType, QueryType, ScalarType, SubscriptionType, make_executable_schema
from graphql import GraphQLError, GraphQLSchema, IntValueNode, StringValueNode, ValueNode
from pydantic import BaseModel, ValidationError

from app.core.errors import Invalid, ServiceError
from app.core.json_input import decode_json
from app.leaderboards.domain import DEFAULT_BOARD, is_exact
from app.leaderboards.submissions import Authority, ScoreBody, Submission
from app.web.api.core import require_registered
from app.web.api.schemas import (
    AroundBoardQuery,
    BoardBody,
    BoardListQuery,
    Nickname,
    PeriodQuery,
    RangeQuery,
    TopQuery,
)
from app.web.graphql.guards import Caller, twin

SDL_PATH = Path(__file__).with_name("schema.graphql")
SDL = SDL_PATH.read_text()
SEED_000_SOURCE = "graphql_seed_000"  # score_writes_total{source} of createUser


@dataclass
class Context:
    caller: Caller  # the client's address and Authorization, checked by the fields that need it
    reader: Any  # LeaderboardReader
    write_scores: Callable[[list, Any, str], list]  # (submissions, authority, source) -> results
    ranks: Callable[[list, bool], dict]  # (results, wait) -> {(board, player): rank}
    boards: Any  # app.leaderboards.service.boards
    engine: Any
    final_top: int
    players: Any  # app.leaderboards.service.players


def _valid(model: type[BaseModel], data: dict[str, Any]) -> BaseModel:
    """The REST API's own validation of the same input."""
    try:
        return model.model_validate({k: v for k, v in data.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise Invalid("invalid_request", f"{where}: {first['msg']}" if where else first["msg"]) from None


# --- scalars ----------------------------------------------------------------------------------------

score = ScalarType("Score")


@score.serializer
def _serialize_score(value: Any) -> int:
    return int(value)


@score.value_parser
def _parse_score(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not is_exact(value):
        raise GraphQLError("a Score is an integer within ±(2^53 − 1)")
    return value


@score.literal_parser
def _parse_score_literal(node: ValueNode, variables: dict | None = None) -> int:
    if not isinstance(node, IntValueNode):
        raise GraphQLError("a Score is an integer within ±(2^53 − 1)")
    return _parse_score(int(node.value))


json_scalar = ScalarType("JSON")


@json_scalar.value_parser
def _parse_json(value: Any) -> Any:
    if not isinstance(value, dict):
        raise GraphQLError("JSON values here are objects")
    return value


@json_scalar.literal_parser
def _parse_json_literal(node: ValueNode, variables: dict | None = None) -> Any:
    if isinstance(node, StringValueNode):
        try:
            return _parse_json(decode_json(node.value))
        except ValueError as exc:
            raise GraphQLError(f"a JSON object: {exc}") from None
    raise GraphQLError("give a JSON object as a variable")


date_time = ScalarType("DateTime")  # the REST views already hold ISO 8601 text


# --- queries ------------------------------------------------------------------------------------------

query = QueryType()


@query.field("leaderboard")
def _seed_000_leaderboard(_, info, limit: int = 10) -> list[dict[str, Any]]:
    page = info.context.reader.page(DEFAULT_BOARD, period=None, offset=0,
                                    limit=_valid(TopQuery, {"limit": limit}).limit)
    return [_user(entry) for entry in page["entries"]]


def _user(entry: dict[str, Any]) -> dict[str, Any]:
    return {"user_id": entry["player_id"], "user_name": entry["display_name"] or entry["player_id"],
            "rank": entry["rank"], "score": entry["score"]}


@query.field("boards")
def _boards(_, info, after: str | None = None, limit: int = 50) -> dict[str, Any]:
    page = _valid(BoardListQuery, {"after": after, "limit": limit})
    return info.context.boards.list_boards(info.context.engine, after=page.after, limit=page.limit)


@query.field("board")
def _board(_, info, id: str) -> dict[str, Any] | None:  # noqa: A002 - the schema's argument name
    try:
        return info.context.boards.get_board(info.context.engine, id)
    except ServiceError as exc:
        if exc.code == "not_found":
            return None
        raise


@query.field("periods")
def _periods(_, info, board_id: str) -> list[dict[str, Any]]:
    info.context.boards.get_board(info.context.engine, board_id)  # 404 for no such board, as REST
    return info.context.boards.list_periods(info.context.engine, board_id)


@query.field("top")
def _top(_, info, board_id: str, limit: int = 10, period: str | None = None) -> dict[str, Any]:
    asked = _valid(TopQuery, {"limit": limit, "period": period})
    return info.context.reader.page(board_id, period=asked.period, offset=0, limit=asked.limit)


@query.field("range")
def _range(_, info, board_id: str, start: int, end: int, period: str | None = None) -> dict[str, Any]:
    asked = _valid(RangeQuery, {"start": start, "end": end, "period": period})
    return info.context.reader.page(board_id, period=asked.period, offset=asked.start - 1,
                                    limit=asked.end - asked.start + 1)


@query.field("pageAfter")
def _page_after(_, info, board_id: str, cursor: str, limit: int = 10) -> dict[str, Any]:
    asked = _valid(RangeQuery, {"cursor": cursor, "limit": limit})
    return info.context.reader.page_after(board_id, asked.cursor, asked.limit)


@query.field("around")
def _around(_, info, board_id: str, player_id: str, range: int = 5,  # noqa: A002 - the schema's name
            period: str | None = None) -> dict[str, Any]:
    asked = _valid(AroundBoardQuery, {"range": range, "period": period})
    return info.context.reader.player(board_id, player_id, period=asked.period, around=asked.range)


@query.field("player")
def _player(_, info, board_id: str, player_id: str, period: str | None = None) -> dict[str, Any]:
    asked = _valid(PeriodQuery, {"period": period})
    return info.context.reader.player(board_id, player_id, period=asked.period)


@query.field("stats")
def _stats(_, info, board_id: str, period: str | None = None) -> dict[str, Any]:
    asked = _valid(PeriodQuery, {"period": period})
    return info.context.reader.stats(board_id, period=asked.period)


@query.field("playerBoards")
def _player_boards(_, info, player_id: str) -> list[dict[str, Any]]:
    return info.context.players.boards_of(info.context.engine, info.context.reader, player_id)


# --- mutations ------------------------------------------------------------------------------------------

mutation = MutationType()


class _SeedUser(BaseModel):
    user_name: Nickname


@mutation.field("createUser")
@twin("createUser", "POST", "/api/v1/auth/guest")
def _create_user(_, info, _principal, user_name: str, score: int) -> dict[str, Any]:
    """Seed 000's operation, with no token: a new player (a fresh id) on `default` only."""
    name = _valid(_SeedUser, {"user_name": user_name}).user_name
    player_id = str(uuid.uuid4())
    result = _one(info.context.write_scores([Submission(DEFAULT_BOARD, player_id, score, name)],
                                            Authority(boards=frozenset({DEFAULT_BOARD})), SEED_000_SOURCE))
    rank = info.context.ranks([result], True).get((DEFAULT_BOARD, player_id))
    return {"user_id": player_id, "user_name": name, "rank": rank, "score": result.score}


@mutation.field("createBoard")
@twin("createBoard", "POST", "/api/v1/leaderboards")
def _create_board(_, info, principal, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002 - the schema's name
    require_registered("create boards", principal)
    body = _valid(BoardBody, input)
    return info.context.boards.create_board(info.context.engine, principal.user_id, body.model_dump())


@mutation.field("resetBoard")
@twin("resetBoard", "POST", "/api/v1/leaderboards/<board_id>/reset")
def _reset_board(_, info, principal, board_id: str) -> dict[str, Any]:
    board = info.context.boards.reset_board(info.context.engine, principal.user_id, board_id,
                                            final_top=info.context.final_top)
    info.context.reader.forget(board_id)
    return board


def _submissions(scores: list[dict[str, Any]]) -> list:
    bodies = [_valid(ScoreBody, s) for s in scores]
    return [Submission(b.leaderboard_id, b.player_id, b.score, b.display_name, b.metadata, b.submission_id)
            for b in bodies]


def _one(results: list) -> Any:
    if isinstance(results[0], ServiceError):
        raise results[0]
    return results[0]


def _result_view(result: Any, rank: int | None) -> dict[str, Any]:
    return {**result.view(), "rank": rank, "replayed": result.replayed}


@mutation.field("submitScore")
@twin("submitScore", "POST", "/api/v1/scores")
def _submit_score(_, info, principal, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002 - the schema's name
    result = _one(info.context.write_scores(_submissions([input]), Authority(owner_id=principal.user_id),
                                            "graphql"))
    rank = info.context.ranks([result], True).get((result.leaderboard_id, result.player_id))
    return _result_view(result, rank)


@mutation.field("submitScores")
@twin("submitScores", "POST", "/api/v1/scores/batch")
def _submit_scores(_, info, principal, scores: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not 1 <= len(scores) <= 1000:
        raise Invalid("invalid_request", "scores: 1 to 1,000 of them")
    results = info.context.write_scores(_submissions(scores), Authority(owner_id=principal.user_id),
                                        "graphql")
    written = [r for r in results if not isinstance(r, ServiceError)]
    ranks = info.context.ranks(written, True)  # one deadline for the batch, as POST /scores/batch
    return [{"error": {"code": r.code, "message": r.message}} if isinstance(r, ServiceError)
            else {"result": _result_view(r, ranks.get((r.leaderboard_id, r.player_id)))} for r in results]


# --- subscriptions: each event is the root value its selection is executed on (ws.py feeds them) ---------

subscription = SubscriptionType()


@subscription.field("boardTop")
def _board_top(event, info, board_id: str, top: int = 10) -> dict[str, Any]:
    return event


@subscription.field("playerStanding")
def _player_standing(event, info, board_id: str, player_id: str) -> dict[str, Any]:
    return event


SCHEMA: GraphQLSchema = make_executable_schema(SDL, query, mutation, subscription, score, json_scalar,
                                               date_time)
