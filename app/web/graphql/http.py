"""`POST /graphql`: queries and mutations, `{"query", "variables", "operationName"}`, answered in
GraphQL's format, errors included (their `extensions.code` is the REST API's code).

Status: 200 when the operation ran (field errors are in `errors` beside `data`: a mutation its REST
twin refuses gets the twin's code there); 400 when it could not run (a body that is not a JSON
object, or nested too deeply; an operation unparsable, invalid, too big, too deep or too costly);
413 for a body over MAX_BODY_BYTES; 415 for one that is not application/json; 429 when a rate
limit refused it. What each operation costs: guards.py.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request

from app.core.errors import TooManyRequests
from app.core.json_input import JsonInputError, decode_json
from app.leaderboards.service import boards, players
from app.leaderboards.submissions import ScoreRequest
from app.web.api.core import ApiError, read_raw_body
from app.web.extensions import board_reader, engine, score_batcher
from app.web.graphql.execution import RequestError, checked_operation, is_subscription, refusal, run
from app.web.graphql.guards import Caller, charge_document, charge_operation, check_credential
from app.web.graphql.schema import Context
from app.web.ratelimits import client_address

bp = Blueprint("graphql", __name__)


def make_context(caller: Caller) -> Context:
    """What resolvers reach: the same reader, score writes (group commit) and services as the REST API."""
    reader, batcher = board_reader(), score_batcher()  # taken now: a subscription resolves on its own thread
    config = current_app.config["LIVEQUIZ"]
    wait_s = config.score_rank_wait_ms / 1000
    return Context(
        caller=caller, reader=reader,
        write_scores=lambda subs, authority, source: batcher.submit(
            ScoreRequest(tuple(subs), authority, source)),
        ranks=lambda results, wait: reader.ranks_when_shown(results, wait_s if wait else 0.0),
        boards=boards, engine=engine(), final_top=config.leaderboard_final_top, players=players)


def _errors(status: int, code: str, message: str, headers: dict[str, str] | None = None):
    response = jsonify({"errors": [refusal(code, message)]})
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response, status


def _body() -> Any:
    """The request's JSON body; ApiError (413, 415, 400) for one that is too big, not JSON, or nested
    too deeply."""
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    raw = read_raw_body(current_app.config["LIVEQUIZ"].max_body_bytes)
    try:
        return decode_json(raw)
    except JsonInputError as exc:
        raise ApiError(400, "invalid_json",
                       f"the body is not a JSON document this service accepts ({exc})") from None


@bp.post("/graphql")
def graphql_http():
    caller = Caller(client_address(), request.headers.get("Authorization"))
    try:
        charge_document(caller)
        check_credential(caller)
        body = _body()
        if not isinstance(body, dict):
            raise ApiError(400, "bad_request",
                           'send a JSON object: {"query": ..., "variables": ..., "operationName": ...}')
        document, operation = checked_operation(body.get("query"), body.get("operationName"),
                                                body.get("variables"),
                                                max_mutations=current_app.config["LIVEQUIZ"].graphql_max_mutations)
        charge_operation(caller, operation)
    except TooManyRequests as exc:
        return _errors(429, exc.code, exc.message, {"Retry-After": str(exc.retry_after_s)})
    except ApiError as exc:
        return _errors(exc.status, exc.code, exc.message)
    except RequestError as exc:
        return jsonify({"errors": exc.errors}), 400
    if is_subscription(operation):
        return _errors(400, "bad_request",
                       "subscriptions run over a WebSocket on /graphql (graphql-transport-ws)")
    return jsonify(run(document, operation, body.get("variables"), make_context(caller)))
