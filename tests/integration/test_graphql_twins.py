"""Every GraphQL mutation answers each kind of credential as its REST twin does: the same success or
the same error code, for no credential, a guest, the owner, another user, the owner's API key and a
revoked key. The table below is the rule; each cell is sent over both APIs."""
from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from graphql import GraphQLObjectType

from app.web.graphql.guards import TWINS
from app.web.graphql.schema import SCHEMA
from tests.helpers import Api

KINDS = ("none", "guest", "owner", "other", "key", "revoked")
OK, NOT_OWNER, UNAUTHORIZED = "ok", "not_owner", "unauthorized"

EXPECTED = {
    # seed 000's createUser and its twin POST /auth/guest: anyone, whatever the Authorization says
    "createUser": dict.fromkeys(KINDS, OK),
    "createBoard": {"none": UNAUTHORIZED, "guest": "registered_users_only", "owner": OK, "other": OK,
                    "key": "credential_not_allowed", "revoked": UNAUTHORIZED},
    "resetBoard": {"none": UNAUTHORIZED, "guest": NOT_OWNER, "owner": OK, "other": NOT_OWNER,
                   "key": "credential_not_allowed", "revoked": UNAUTHORIZED},
    "submitScore": {"none": UNAUTHORIZED, "guest": NOT_OWNER, "owner": OK, "other": NOT_OWNER, "key": OK,
                    "revoked": UNAUTHORIZED},
    # a batch is accepted; each of its items is refused or written on its own
    "submitScores": {"none": UNAUTHORIZED, "guest": f"{OK} [{NOT_OWNER}]", "owner": f"{OK} [{OK}]",
                     "other": f"{OK} [{NOT_OWNER}]", "key": f"{OK} [{OK}]", "revoked": UNAUTHORIZED},
}


@dataclass
class World:
    api: Api
    tokens: dict[str, str | None]
    board_id: str


@pytest.fixture()
def world(api: Api) -> World:
    owner, other, guest = api.host(), api.host(), api.guest()
    key = api.post("/api/v1/api-keys", {"name": "server"}, token=owner.token, expect=201).get_json()["key"]
    revoked = api.post("/api/v1/api-keys", {"name": "old"}, token=owner.token, expect=201).get_json()
    api.delete(f"/api/v1/api-keys/{revoked['id']}", token=owner.token, expect=204)
    board_id = "t" + uuid.uuid4().hex[:12]
    api.post("/api/v1/leaderboards", {"id": board_id, "name": "Twins", "sort_order": "desc",
                                      "update_mode": "best", "reset_period": "daily"},
             token=owner.token, expect=201)
    tokens = {"none": None, "guest": guest.token, "owner": owner.token, "other": other.token, "key": key,
              "revoked": revoked["key"]}
    return World(api, tokens, board_id)


def _new_board() -> dict[str, Any]:
    return {"id": "t" + uuid.uuid4().hex[:12], "name": "New", "sort_order": "asc", "update_mode": "replace",
            "reset_period": "never"}


def _score(board_id: str) -> dict[str, Any]:
    return {"leaderboard_id": board_id, "player_id": "p-" + uuid.uuid4().hex[:6], "score": 7}


# mutation -> (its REST request, its GraphQL operation and variables), for a board of the owner
CALLS: dict[str, Callable[[str], tuple[tuple[str, dict | None], tuple[str, dict]]]] = {
    "createUser": lambda b: (("/api/v1/auth/guest", {"nickname": "Twin"}),
                             ("mutation { createUser(user_name: \"Twin\", score: 3) { user_id } }", {})),
    "createBoard": lambda b: (("/api/v1/leaderboards", _new_board()),
                              ("mutation($i: BoardInput!) { createBoard(input: $i) { id } }",
                               {"i": _new_board()})),
    "resetBoard": lambda b: ((f"/api/v1/leaderboards/{b}/reset", None),
                             ("mutation($b: ID!) { resetBoard(board_id: $b) { current_period } }", {"b": b})),
    "submitScore": lambda b: (("/api/v1/scores", _score(b)),
                              ("mutation($s: ScoreInput!) { submitScore(input: $s) { outcome } }",
                               {"s": _score(b)})),
    "submitScores": lambda b: (("/api/v1/scores/batch", {"scores": [_score(b)]}), (
        "mutation($s: [ScoreInput!]!) { submitScores(scores: $s) { result { outcome } error { code } } }",
        {"s": [_score(b)]})),
}


def _rest_outcome(api: Api, path: str, body: dict | None, token: str | None) -> str:
    response = api.post(path, body, token=token)
    payload = response.get_json() or {}
    if response.status_code >= 300:
        return payload["error"]["code"]
    if "results" in payload:
        return f"{OK} [{', '.join(r['error']['code'] if 'error' in r else OK for r in payload['results'])}]"
    return OK


def _graphql_outcome(api: Api, query: str, variables: dict, token: str | None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = api.client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    payload = response.get_json()
    if payload.get("errors"):
        return payload["errors"][0]["extensions"]["code"]
    assert response.status_code == 200
    [result] = payload["data"].values()
    if isinstance(result, list):
        return f"{OK} [{', '.join(item['error']['code'] if item['error'] else OK for item in result)}]"
    return OK


def test_every_mutation_has_a_rest_twin():
    mutation_type = SCHEMA.mutation_type
    assert isinstance(mutation_type, GraphQLObjectType)
    assert sorted(TWINS) == sorted(mutation_type.fields) == sorted(EXPECTED) == sorted(CALLS)


@pytest.mark.parametrize("mutation", sorted(EXPECTED))
def test_each_credential_kind_gets_the_same_answer_from_both_apis(world: World, mutation: str):
    outcomes = {}
    for kind in KINDS:
        (path, body), (query, variables) = CALLS[mutation](world.board_id)
        token = world.tokens[kind]
        outcomes[kind] = (_rest_outcome(world.api, path, body, token),
                          _graphql_outcome(world.api, query, variables, token))
    assert outcomes == {kind: (expected, expected) for kind, expected in EXPECTED[mutation].items()}
