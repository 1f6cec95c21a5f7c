"""`POST /graphql`: queries and mutations, `{"query", "variables", "operationName"}`, answered in
GraphQL's format, errors included (their `extensions.code` is the REST API's code).

Status: 200 when the operation ran (field errors are in `errors` beside `data`), 400 when it could
not run (unparsable, invalid, too deep or too costly), 401 for a bad token, 429 when a rate limit
refused it. Every request counts against the address's API and public-read budgets, a signed-in one
against its user's too (an API key's against its owner's score writes).
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request

from app.api.core import ApiError, principal_from_header
from app.extensions import runtime
from app.graphql.execution import RequestError, checked_operation, is_subscription, run
from app.graphql.schema import Context
from app.leaderboards import boards, players
from app.leaderboards.scores import ScoreRequest
from app.ratelimits import Limit, client_address
from app.services.errors import TooManyRequests

bp = Blueprint("graphql", __name__)


def make_context(principal) -> Context:
    """What resolvers reach: the same reader, score writes (group commit) and services as the REST API."""
    live = runtime()
    config = current_app.config["LIVEQUIZ"]
    wait_s = config.score_rank_wait_ms / 1000
    return Context(
        principal=principal, reader=live.board_reader,
        write_scores=lambda subs, authority, source: live.score_batcher.submit(
            ScoreRequest(tuple(subs), authority, source)),
        ranks=lambda results, wait: live.board_reader.ranks_when_shown(results, wait_s if wait else 0.0),
        boards=boards, engine=live.engine, final_top=config.leaderboard_final_top, players=players)


def _errors(status: int, code: str, message: str, headers: dict[str, str] | None = None):
    response = jsonify({"errors": [{"message": message, "extensions": {"code": code}}]})
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response, status


def _principal():
    if not request.headers.get("Authorization"):
        return None
    return principal_from_header(api_keys=True)


def _hit_address_budgets() -> None:
    address = client_address()
    runtime().rate_limits.hit(Limit("api_per_address", address), Limit("public_reads_per_address", address))


@bp.post("/graphql")
def graphql_http():
    body: Any = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _errors(400, "bad_request", "send a JSON object: {\"query\": ..., \"variables\": ..., \"operationName\": ...}")
    try:
        _hit_address_budgets()
        principal = _principal()
        if principal is not None:
            _hit_budgets_user(principal)
        document, operation = checked_operation(body.get("query"), body.get("operationName"), body.get("variables"))
    except TooManyRequests as exc:
        return _errors(429, exc.code, exc.message, {"Retry-After": str(exc.retry_after_s)})
    except ApiError as exc:
        return _errors(exc.status, exc.code, exc.message)
    except RequestError as exc:
        return jsonify({"errors": exc.errors}), 400
    if is_subscription(operation):
        return _errors(400, "bad_request", "subscriptions run over a WebSocket on /graphql (graphql-transport-ws)")
    return jsonify(run(document, operation, body.get("variables"), make_context(principal)))


def _hit_budgets_user(principal) -> None:
    rule = "score_writes_per_user" if principal.via_api_key else "api_per_user"
    runtime().rate_limits.hit(Limit(rule, str(principal.user_id)))
