"""Property-based fuzzing of `POST /graphql` from the schema file, against the running stack, beside
the REST API's (test_fuzz.py).

hypothesis-graphql builds operations from app/web/graphql/schema.graphql, for every root field of Query
and Mutation: valid ones (every argument of its type, a random selection of the result) and invalid
ones (one schema violation each: a wrong type, a missing argument, an unknown field). Three times in
four the ids name a real board, its players and period, and each request carries one kind of credential (none,
the board's owner, their API key, a guest, another user), so that most get past 401 and 404. The
real gunicorn, relay and worker answer. Every answer must be no 5xx, a JSON object with `data` or
`errors`, and carry no error that is the server's fault: `internal_error` (a resolver failed) or a
non-null field that resolved to null. A valid operation on a field a real board reaches must succeed
at least once (the fuzzer got past the guards; with 25 examples or more).

Bounded and reproducible: FUZZ_GRAPHQL_EXAMPLES examples per root field and kind (default 50: 16
fields x 2 x 50 = 1,600 requests, about 30 s here), derandomized (Hypothesis derives every run from
the test itself: the same requests each time, nothing to flake on), no example database, no
deadline; each field's run is also under the suite's 300 s timeout.
`FUZZ_GRAPHQL_EXAMPLES=500 .venv/bin/python -m pytest tests/e2e/test_graphql_fuzz.py` digs deeper.
"""
from __future__ import annotations

import dataclasses
import json
import os
import uuid
from collections import Counter
from dataclasses import dataclass

import graphql
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, mutations, nodes, queries

from app.web.graphql.schema import SDL
from tests.helpers import Api, HttpClient, wait_until

FUZZ_GRAPHQL_EXAMPLES = int(os.environ.get("FUZZ_GRAPHQL_EXAMPLES", "50"))
SCHEMA = graphql.build_schema(SDL)
FIELDS = [("query", name) for name in SCHEMA.query_type.fields] + [
    ("mutation", name) for name in SCHEMA.mutation_type.fields]
GUARDS_PASSED_WITHIN = 25  # examples: fewer may all miss (a smoke run)
# Fields a valid operation reaches with a real board's id and the owner's credentials alone.
REACHABLE = {"leaderboard", "boards", "board", "periods", "top", "range", "around", "player", "stats",
             "playerBoards", "createUser", "resetBoard", "submitScore", "submitScores"}
EXACT = 2**53 - 1
SCALARS = {
    "Score": st.one_of(st.integers(-EXACT, EXACT), st.sampled_from([EXACT, -EXACT, EXACT + 1, 2**63, 0])).map(
        nodes.Int),
    "JSON": st.one_of(
        st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=3).map(json.dumps),
        st.sampled_from(['"x"', "[1]", "{", "[" * 60 + "]" * 60])).map(nodes.String),
}
# Arguments and input fields that name a board, a player or a period, or size a page: given a real
# board's (or a size in range) three times in four, so that valid operations reach the board.
AIMED_TEXT = {"board_id": lambda w: st.just(w.board_id), "leaderboard_id": lambda w: st.just(w.board_id),
              "id": lambda w: st.just(w.board_id), "player_id": lambda w: st.sampled_from(w.players),
              "period": lambda w: st.just(w.period)}
AIMED_SIZES = st.integers(1, 10)  # limit, top, range, start, end
CREDENTIALS = ("owner", "owner", "owner", "key", "none", "guest", "other")  # the owner's most often


@dataclass
class World:
    tokens: dict[str, str | None]
    board_id: str
    period: str
    players: list[str]


@pytest.fixture(scope="module")
def world(live_stack) -> World:
    api = Api(HttpClient(live_stack.base_url))
    owner, other, guest = api.host(), api.host(), api.guest()
    key = api.post("/api/v1/api-keys", {"name": "fuzz"}, token=owner.token, expect=201).get_json()["key"]
    board_id = "fuzz-" + uuid.uuid4().hex[:8]
    period = api.post("/api/v1/leaderboards", {"id": board_id, "name": "Fuzz", "sort_order": "desc",
                                               "update_mode": "best", "reset_period": "never"},
                      token=owner.token, expect=201).get_json()["current_period"]
    players = [f"p{n}" for n in range(5)]
    api.post("/api/v1/scores/batch", {"scores": [{"leaderboard_id": board_id, "player_id": p, "score": 10 * n}
                                                 for n, p in enumerate(players)]}, token=owner.token,
             expect=200)
    wait_until(lambda: api.get(f"/api/v1/leaderboards/{board_id}/top", expect=200).get_json()["total"] == 5,
               "the fuzz board's scores never reached it")
    tokens = {"none": None, "owner": owner.token, "key": key, "guest": guest.token, "other": other.token}
    return World(tokens, board_id, period, players)


class _Aim(graphql.Visitor):
    """Points some board and player ids of a document at the world's."""

    def __init__(self, world: World, draw):
        super().__init__()
        self.world, self.draw = world, draw

    def enter_argument(self, node: graphql.ArgumentNode, *_):
        return self._aimed(node)

    def enter_object_field(self, node: graphql.ObjectFieldNode, *_):
        return self._aimed(node)

    def _aimed(self, node):
        name, value = node.name.value, node.value
        if isinstance(value, graphql.StringValueNode) and name in AIMED_TEXT:
            aimed = graphql.StringValueNode(value=self.draw(AIMED_TEXT[name](self.world)))
        elif isinstance(value, graphql.IntValueNode) and name in ("limit", "top", "range", "start", "end"):
            aimed = graphql.IntValueNode(value=str(self.draw(AIMED_SIZES)))
        else:
            return None
        # Aimed unless the draw is 3: Hypothesis leans to the smallest value, which must not mean "left
        # as drawn", or a change of the schema (another field to select) can leave a field never aimed.
        return dataclasses.replace(node, value=aimed) if self.draw(st.integers(0, 3)) != 3 else None


def _server_faults(body: dict) -> list[dict]:
    return [e for e in body.get("errors") or [] if (e.get("extensions") or {}).get("code") == "internal_error"
            or "Cannot return null for non-nullable field" in e.get("message", "")]


@pytest.fixture(scope="module")
def http():
    with requests.Session() as session:
        yield session


@pytest.mark.parametrize("mode", [Mode.POSITIVE, Mode.NEGATIVE], ids=["valid", "invalid"])
@pytest.mark.parametrize(("kind", "field"), FIELDS, ids=[name for _, name in FIELDS])
def test_no_graphql_answer_is_a_server_error(world: World, http: requests.Session, live_stack, kind, field,
                                             mode):
    build = queries if kind == "query" else mutations
    documents = build(SCHEMA, fields=[field], custom_scalars=SCALARS, mode=mode,
                      print_ast=lambda document: document)
    outcomes: Counter[str] = Counter()

    @settings(max_examples=FUZZ_GRAPHQL_EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(st.data())
    def send(data) -> None:
        document = graphql.visit(data.draw(documents), _Aim(world, data.draw))
        token = world.tokens[data.draw(st.sampled_from(CREDENTIALS))]
        query = graphql.print_ast(document)
        response = http.post(f"{live_stack.base_url}/graphql", json={"query": query}, timeout=30,
                             headers={"Authorization": f"Bearer {token}"} if token else {})
        assert response.status_code < 500, (response.status_code, query, response.text[:500])
        body = response.json()
        assert isinstance(body, dict) and ("data" in body or "errors" in body), (query, body)
        assert not _server_faults(body), (query, body)
        outcomes["ok" if response.status_code == 200 and not body.get("errors") else
                 body["errors"][0].get("extensions", {}).get("code", "?")] += 1

    send()
    print(f"{field} ({mode.name.lower()}): {sum(outcomes.values())} requests, "
          f"{dict(sorted(outcomes.items()))}")
    if mode is Mode.POSITIVE and field in REACHABLE and FUZZ_GRAPHQL_EXAMPLES >= GUARDS_PASSED_WITHIN:
        assert outcomes["ok"] > 0, f"{field}: never got past the guards: {dict(outcomes)}"
