"""GraphQL over HTTP: seed 000's operations verbatim, the same data as the REST API for the same board
and period, the same credentials, exact scores, and the protections (document cache, depth and cost
limits, GraphQL-formatted errors without stack traces, rate limits); the schema file is the schema."""
from __future__ import annotations

import uuid

import pytest
from graphql import build_client_schema, build_schema, get_introspection_query, print_schema

from app import create_app
from app.leaderboards.domain import MAX_EXACT
from app.web.graphql.execution import DOCUMENTS, MAX_DEPTH
from app.web.graphql.schema import SDL
from tests.helpers import WAIT_S, Api
from tests.integration.leaderboard_support import Applier, board, owner, score

SEED_000_MUTATION = """mutation createDummyUser($user_name: String!, $score: Int!) {
  createUser(user_name: $user_name, score: $score) {
    user_id
    user_name
    rank
    score
  }
}"""
SEED_000_QUERY = """query {
	leaderboard {
    score
    user_id
    user_name
  }
}"""


def gql(client, query: str, variables: dict | None = None, token: str | None = None,
        expect: int = 200) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    assert response.status_code == expect, (response.status_code, response.get_json())
    body = response.get_json()
    assert "traceback" not in str(body).lower()
    return body


def data(client, query: str, variables: dict | None = None, token: str | None = None) -> dict:
    body = gql(client, query, variables, token)
    assert "errors" not in body, body["errors"]
    return body["data"]


def error_code(body: dict) -> str:
    return body["errors"][0]["extensions"]["code"]


@pytest.fixture()
def applier(config, engine, redis_client):
    return Applier(config, engine, redis_client)


def test_seed_000_operations_work_verbatim_without_a_token(config, applier):
    # The rank is read once the board shows the write: here a worker applies it, however slowly.
    waiting = create_app(config.replace(score_rank_wait_ms=int(WAIT_S * 1000)))
    client = waiting.test_client()
    name = "Dummy " + uuid.uuid4().hex[:6]
    with applier.running("default"):
        created = data(client, SEED_000_MUTATION, {"user_name": name, "score": 7})["createUser"]
    assert created["user_name"] == name and created["score"] == 7 and uuid.UUID(created["user_id"])
    assert isinstance(created["rank"], int) and created["rank"] >= 1
    applier.catch_up("default")
    board = data(client, SEED_000_QUERY)["leaderboard"]
    assert {"score": 7, "user_id": created["user_id"], "user_name": name} in board
    assert [u["score"] for u in board] == sorted((u["score"] for u in board), reverse=True)
    # Without a token, only `default`: the other mutations need the REST API's credentials.
    refused = gql(client, 'mutation { submitScore(input: {leaderboard_id: "default", player_id: "x", '
                          'score: 1}) { rank } }')
    assert error_code(refused) == "unauthorized"


def test_the_same_board_reads_the_same_as_over_rest(api: Api, client, applier):
    who = owner(api)
    board_id = board(api, who)["id"]
    for n, player in enumerate(["ann", "bob", "cy", "dee", "eve", "fay"]):
        score(api, who, board_id, player, 100 + 10 * (n % 4), display_name=player.title())
    applier.catch_up(board_id)
    entries = "entries { rank player_id display_name score reached_at metadata }"
    got = data(client, f"""query($b: ID!) {{
        top(board_id: $b, limit: 4) {{ leaderboard_id period version total {entries} next_cursor }}
        range(board_id: $b, start: 2, end: 5) {{ version total {entries} }}
        around(board_id: $b, player_id: "bob", range: 1) {{ rank score top_percent total {entries} }}
        player(board_id: $b, player_id: "cy") {{ rank score top_percent total display_name reached_at }}
        stats(board_id: $b) {{ count min max sum mean p50 p90 p99 }}
        board(id: $b) {{ id name sort_order update_mode current_period next_reset }}
        periods(board_id: $b) {{ period closed_at total }}
        playerBoards(player_id: "ann") {{ leaderboard_id rank score total }}
    }}""", {"b": board_id})
    base = f"/api/v1/leaderboards/{board_id}"
    rest_top = api.get(f"{base}/top", expect=200, limit=4).get_json()
    assert got["top"] == {k: rest_top[k] for k in got["top"]}
    paged = data(client, "query($b: ID!, $c: String!) { pageAfter(board_id: $b, cursor: $c, limit: 2) "
                         "{ entries { player_id score } } }", {"b": board_id, "c": rest_top["next_cursor"]})
    rest_after = api.get(f"{base}/range", expect=200, cursor=rest_top["next_cursor"], limit=2).get_json()
    assert paged["pageAfter"]["entries"] == [{k: e[k] for k in ("player_id", "score")}
                                             for e in rest_after["entries"]]
    rest_range = api.get(f"{base}/range", expect=200, start=2, end=5).get_json()
    assert got["range"] == {k: rest_range[k] for k in got["range"]}
    rest_around = api.get(f"{base}/around/bob", expect=200, range=1).get_json()
    assert got["around"] == {k: rest_around[k] for k in got["around"]}
    rest_player = api.get(f"{base}/player/cy", expect=200).get_json()
    assert got["player"] == {k: rest_player[k] for k in got["player"]}
    rest_stats = api.get(f"{base}/stats", expect=200).get_json()
    assert got["stats"] == {k: rest_stats[k] for k in got["stats"]}
    rest_board = api.get(base, expect=200).get_json()
    assert got["board"] == {k: rest_board[k] for k in got["board"]}
    rest_periods = api.get(f"{base}/periods", expect=200).get_json()["periods"]
    assert got["periods"] == [{k: p[k] for k in ("period", "closed_at", "total")} for p in rest_periods]
    rest_players = api.get("/api/v1/players/ann/boards", expect=200).get_json()["boards"]
    mine = [b for b in got["playerBoards"] if b["leaderboard_id"] == board_id]
    assert mine == [{k: b[k] for k in ("leaderboard_id", "rank", "score", "total")}
                    for b in rest_players if b["leaderboard_id"] == board_id]
    assert data(client, 'query { board(id: "no-such-board") { id } }') == {"board": None}
    assert error_code(gql(client, 'query { top(board_id: "no-such-board") { total } }')) == "not_found"


def test_writes_need_the_rest_apis_credentials(api: Api, client, applier):
    who = owner(api)
    guest = api.guest()
    key = api.post("/api/v1/api-keys", {"name": "server"}, token=who.token, expect=201).get_json()["key"]
    board_input = {"id": "g" + uuid.uuid4().hex[:10], "name": "Arena", "sort_order": "desc",
                   "update_mode": "increment", "reset_period": "never"}
    create = "mutation($i: BoardInput!) { createBoard(input: $i) { id owner_id current_period } }"
    assert error_code(gql(client, create, {"i": board_input}, token=guest.token)) == "registered_users_only"
    assert error_code(gql(client, create, {"i": board_input}, token=key)) == "credential_not_allowed"
    created = data(client, create, {"i": board_input}, token=who.token)["createBoard"]
    assert created["owner_id"] == who.user_id
    assert error_code(gql(client, create, {"i": board_input}, token=who.token)) == "board_exists"
    assert error_code(gql(client, create, {"i": {**board_input, "sort_order": "up"}}, token=who.token)) \
        == "invalid_request"

    submit = ("mutation($s: ScoreInput!) { submitScore(input: $s) "
              "{ outcome score previous_score replayed } }")
    one = {"leaderboard_id": created["id"], "player_id": "p1", "score": MAX_EXACT - 1, "submission_id": "s1"}
    first = data(client, submit, {"s": one}, token=key)["submitScore"]
    again = data(client, submit, {"s": one}, token=key)["submitScore"]
    assert (first["score"], first["replayed"], again["replayed"]) == (MAX_EXACT - 1, False, True)
    assert error_code(gql(client, submit, {"s": {**one, "score": 5}}, token=key)) == "submission_conflict"
    assert error_code(gql(client, submit, {"s": {**one, "submission_id": "s2", "score": 2}}, token=key)) \
        == "score_overflow"
    assert error_code(gql(client, submit, {"s": {**one, "score": MAX_EXACT + 1}}, token=key, expect=200)) \
        == "bad_request"  # not a Score: refused before it runs
    other = owner(api)
    assert error_code(gql(client, submit, {"s": {**one, "submission_id": "s3"}},
                          token=other.token)) == "not_owner"

    batch = data(client, """mutation($s: [ScoreInput!]!) { submitScores(scores: $s) {
        result { player_id score } error { code } } }""", {"s": [
        {"leaderboard_id": created["id"], "player_id": "p2", "score": 3},
        {"leaderboard_id": "no-such-board", "player_id": "p2", "score": 3}]}, token=who.token)["submitScores"]
    assert batch == [{"result": {"player_id": "p2", "score": 3}, "error": None},
                     {"result": None, "error": {"code": "not_found"}}]
    applier.catch_up(created["id"])
    assert api.get(f"/api/v1/leaderboards/{created['id']}/player/p1",
                   expect=200).get_json()["score"] == MAX_EXACT - 1


def test_documents_are_checked_once_and_bounded(client):
    query = "query { top(board_id: \"default\", limit: 3) { total } }"
    gql(client, query)
    hits = DOCUMENTS.hits
    gql(client, query)
    assert DOCUMENTS.hits == hits + 1  # the second one skipped parsing and validation

    nested = "query { " + "boards { boards { id } } " * 1 + "}"
    assert "errors" not in gql(client, nested)
    deep = "fragment F on Page { entries { rank } } query { top(board_id: \"default\") { ...F } }"
    assert "errors" not in gql(client, deep)
    costly = gql(client, 'query { a: top(board_id: "default", limit: 100) { entries { rank player_id '
                         'score display_name reached_at } } b: top(board_id: "default", limit: 100) '
                         '{ entries { rank player_id score display_name reached_at } } c: boards(limit: 100) '
                         '{ boards { id name sort_order update_mode reset_period timezone } } '
                         'd: range(board_id: "default", start: 1, end: 5000) '
                         '{ entries { rank player_id score display_name reached_at } } }',
                 expect=400)
    assert error_code(costly) == "query_too_costly"
    too_deep = ("query { __schema { types { fields { type " + "{ ofType " * MAX_DEPTH + "{ name }"
                + " }" * (MAX_DEPTH + 4))
    assert error_code(gql(client, too_deep, expect=400)) == "query_too_deep"
    assert error_code(gql(client, "query {", expect=400)) == "graphql_parse_failed"
    assert error_code(gql(client, "query { nope }", expect=400)) == "graphql_validation_failed"
    response = client.post("/graphql", data="not json", content_type="application/json")
    assert (response.status_code == 400
            and response.get_json()["errors"][0]["extensions"]["code"] == "invalid_json")
    subscription = gql(client, 'subscription { boardTop(board_id: "default") { version } }', expect=400)
    assert "WebSocket" in subscription["errors"][0]["message"]


def test_the_schema_file_is_the_schema_served(client):
    served = data(client, get_introspection_query(descriptions=True))
    assert print_schema(build_client_schema(served)) == print_schema(build_schema(SDL))


def test_a_spent_budget_answers_429_in_graphqls_format(app, client, monkeypatch):
    from app.core.errors import TooManyRequests
    from app.web.extensions import rate_limits

    with app.app_context():
        limits = rate_limits()

    def refuse(*limits_):
        raise TooManyRequests("too_many_requests", "too many requests (public reads per address)",
                              retry_after_s=7)

    monkeypatch.setattr(limits, "hit", refuse)
    response = client.post("/graphql", json={"query": SEED_000_QUERY})
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    assert response.get_json()["errors"][0]["extensions"]["code"] == "too_many_requests"
