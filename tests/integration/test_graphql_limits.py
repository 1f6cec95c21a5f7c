"""What one GraphQL request may cost, over HTTP: a document is measured in one pass (each fragment
once) and refused before anything runs when it is too big, too costly or runs too many mutations;
each mutation is charged to its REST twin's budgets; a body too big or nested too deeply is refused
in GraphQL's format, never with a 500."""
from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import text

from app import create_app
from app.core.metrics import GRAPHQL_FRAGMENTS_MEASURED
from app.web.graphql.execution import MAX_ALIASES, MAX_FIELDS, MAX_FRAGMENTS
from tests.e2e.room_client import SocketClient
from tests.helpers import WAIT_S, Api, fragment_bomb


def post(client, query: str, expect: int, **extra):
    response = client.post("/graphql", json={"query": query, **extra})
    body = response.get_json()
    assert response.status_code == expect, (response.status_code, body)
    assert "traceback" not in response.get_data(as_text=True).lower()
    return body


def code_of(body: dict) -> str:
    return body["errors"][0]["extensions"]["code"]


def players_named(engine, name: str) -> int:
    with engine.connect() as db:
        return db.execute(text("SELECT count(*) FROM leaderboard_entries WHERE display_name = :n"),
                          {"n": name}).scalar()


@pytest.mark.parametrize("n", [25, 40])
def test_a_fragment_bomb_is_refused_with_each_fragment_measured_once(client, n):
    bomb = fragment_bomb(n).replace("query Q", "query Q" + uuid.uuid4().hex, 1)  # a text not checked before
    measured = GRAPHQL_FRAGMENTS_MEASURED._value.get()
    body = post(client, bomb, 400)
    assert code_of(body) == "query_too_costly" and "data" not in body
    assert str(2 ** n) in body["errors"][0]["message"]  # its true cost, found without expanding it
    assert GRAPHQL_FRAGMENTS_MEASURED._value.get() - measured == n + 1


def test_a_cost_its_variables_decide_is_judged_with_them(client):
    """A text is measured once before validation with its variables unknown (each list they size
    counts one entry, the least it can be), then each request with its own."""
    pages = " ".join(f'p{i}: range(board_id: "default", start: 1, end: $end) {{ entries {{ rank score }} }}'
                     for i in range(20))
    query = f"query Pages($end: Int!) {{ {pages} }}"
    assert "errors" not in post(client, query, 200, variables={"end": 5})
    assert code_of(post(client, query, 400, variables={"end": 1000})) == "query_too_costly"


def test_a_mutation_inside_a_fragment_bomb_never_runs(client, engine):
    bombed, later = "bomb " + uuid.uuid4().hex[:8], "later " + uuid.uuid4().hex[:8]
    def write(name: str) -> str:
        return f'createUser(user_name: "{name}", score: 1) {{ user_id }}'

    body = post(client, fragment_bomb(25, write(bombed), on="Mutation", operation="mutation"), 400)
    assert code_of(body) == "query_too_costly"
    # A write sent after it is committed when it answers: had the bomb's run, it would be there too.
    assert "errors" not in post(client, f"mutation {{ {write(later)} }}", 200)
    assert (players_named(engine, later), players_named(engine, bombed)) == (1, 0)


def test_fields_aliases_and_mutations_per_document_are_bounded(client, config, engine):
    aliased = "query { " + " ".join(f"a{i}: __typename" for i in range(MAX_ALIASES + 1)) + " }"
    assert code_of(post(client, aliased, 400)) == "too_many_aliases"
    assert "errors" not in post(client,
                                "query { " + " ".join(f"a{i}: __typename" for i in range(MAX_ALIASES)) + " }",
                                200)
    wide = "query { top(board_id: \"default\") { " + " ".join(["total"] * MAX_FIELDS) + " } }"
    assert code_of(post(client, wide, 400)) == "too_many_fields"
    spreads = "query { " + " ".join(["...F"] * MAX_FIELDS) + " } fragment F on Query { __typename }"
    assert code_of(post(client, spreads, 400)) == "too_many_fields"
    many = range(MAX_FRAGMENTS + 1)
    fragments = (" ".join(f"...G{i}" for i in many) + " } "
                 + " ".join(f"fragment G{i} on Query {{ __typename }}" for i in many))
    assert code_of(post(client, "query { " + fragments, 400)) == "too_many_fragments"

    name = "many " + uuid.uuid4().hex[:8]
    writes = " ".join(f'w{i}: createUser(user_name: "{name}", score: {i}) {{ user_id }}'
                      for i in range(config.graphql_max_mutations + 1))
    assert code_of(post(client, f"mutation {{ {writes} }}", 400)) == "too_many_mutations"
    assert players_named(engine, name) == 0
    # Spread through fragments, the same mutation runs once per response key: that is what is counted.
    fields = " ".join(f'w{i}: createUser(user_name: "{name}", score: {i}) {{ user_id }}'
                      for i in range(config.graphql_max_mutations))
    spread = f"mutation {{ ...M ...M }} fragment M on Mutation {{ {fields} }}"
    assert len(post(client, spread, 200)["data"]) == config.graphql_max_mutations
    assert players_named(engine, name) == config.graphql_max_mutations


@pytest.fixture()
def strict(database, config):
    """An app whose budgets are small enough to spend in a test (each test on an address of its own)."""
    return create_app(config.replace(rate_signup_per_address="3/minute", rate_api_per_user="4/minute"))


def an_address() -> dict[str, str]:
    number = uuid.uuid4().int
    return {"REMOTE_ADDR": f"10.{number % 250}.{(number >> 8) % 250}.{(number >> 16) % 250 + 1}"}


def test_each_mutation_field_is_charged_to_its_rest_twins_budget(strict, engine):
    client, address, name = strict.test_client(), an_address(), "kid " + uuid.uuid4().hex[:8]
    writes = " ".join(f'w{i}: createUser(user_name: "{name}", score: {i}) {{ user_id }}' for i in range(4))
    response = client.post("/graphql", json={"query": f"mutation {{ {writes} }}"}, environ_base=address)
    body = response.get_json()
    assert response.status_code == 200 and len(body["errors"]) == 1
    refused = body["errors"][0]  # the 4th: each field is an account of the address's 3 a minute
    assert refused["path"] == ["w3"] and refused["extensions"]["code"] == "too_many_requests"
    assert refused["extensions"]["retry_after_s"] >= 1
    assert players_named(engine, name) == 3  # (`data` is null: a mutation's result is non-null)
    # The twin's budget is the one spent: a guest account from the same address is refused too.
    guest = client.post("/api/v1/auth/guest", json={"nickname": "kid"}, environ_base=address)
    assert guest.status_code == 429


def test_a_signed_in_mutation_is_charged_to_its_users_budget(strict, api: Api):
    owner = api.host()  # through the usual app: the strict one's budgets are for this test's requests only
    board_id = "b" + uuid.uuid4().hex[:12]
    api.post("/api/v1/leaderboards", {"id": board_id, "name": "B", "sort_order": "desc",
                                      "update_mode": "best", "reset_period": "never"},
             token=owner.token, expect=201)
    resets = " ".join(f'r{i}: resetBoard(board_id: "{board_id}") {{ current_period }}' for i in range(5))
    body = strict.test_client().post("/graphql", json={"query": f"mutation {{ {resets} }}"},
                                     environ_base=an_address(),
                                     headers={"Authorization": f"Bearer {owner.token}"}).get_json()
    # The user's 4 API requests a minute: the 5th reset is refused, as a 5th POST .../reset would be.
    assert [(e["path"], e["extensions"]["code"]) for e in body["errors"]] == [(["r4"], "too_many_requests")]


def test_a_body_too_big_or_nested_too_deeply_is_refused_in_graphqls_format(client, config):
    deep = '{"query": "{ leaderboard { score } }", "variables": {"a": ' + "[" * 5000 + "]" * 5000 + "}}"
    assert len(deep) < config.max_body_bytes
    response = client.post("/graphql", data=deep, content_type="application/json")
    assert response.status_code == 400 and code_of(response.get_json()) == "invalid_json"
    assert "too_deep" in response.get_json()["errors"][0]["message"]

    huge = {"query": "{ leaderboard { score } }", "variables": {"pad": "x" * config.max_body_bytes}}
    response = client.post("/graphql", json=huge)
    assert response.status_code == 413 and code_of(response.get_json()) == "body_too_large"
    assert "error" not in response.get_json()  # GraphQL's shape, not the REST API's

    response = client.post("/graphql", data="{}", content_type="text/plain")
    assert response.status_code == 415 and code_of(response.get_json()) == "unsupported_media_type"


@pytest.fixture()
def strict_socket_url(database, config):
    """A real server (werkzeug's, in a thread) of an app with small budgets, behind a proxy it trusts
    so that each socket names an address of its own (X-Forwarded-For)."""
    from werkzeug.serving import make_server

    app = create_app(config.replace(rate_public_reads_per_address="3/minute",
                                    rate_signup_per_address="2/minute", web_trusted_proxies=1))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="strict-server", daemon=True)
    thread.start()
    yield f"ws://127.0.0.1:{server.server_port}/graphql"
    server.shutdown()
    thread.join(WAIT_S)


def test_each_message_on_the_socket_is_charged_like_a_request(strict_socket_url):
    client = SocketClient(strict_socket_url, subprotocols=["graphql-transport-ws"],
                          header=[f"X-Forwarded-For: {an_address()['REMOTE_ADDR']}"])
    client.send({"type": "connection_init"})
    client.wait_type("connection_ack")

    def outcome(sub_id: str, query: str) -> str:
        client.send({"id": sub_id, "type": "subscribe", "payload": {"query": query}})
        answer = client.wait_for(lambda m: m.get("id") == sub_id and m["type"] in ("next", "error"))
        errors = answer["payload"] if answer["type"] == "error" else answer["payload"].get("errors")
        return errors[0]["extensions"]["code"] if errors else "ok"

    reads = [outcome(f"q{i}", "{ leaderboard { score } }") for i in range(4)]
    writes = [outcome(f"m{i}", 'mutation { createUser(user_name: "kid", score: 1) { user_id } }')
              for i in range(3)]
    assert (reads, writes) == (["ok"] * 3 + ["too_many_requests"], ["ok"] * 2 + ["too_many_requests"])
    client.send({"type": "ping"})
    client.wait_type("pong")  # refused operations leave the socket open
    assert client.close_code is None
