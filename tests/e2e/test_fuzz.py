"""Property-based fuzzing of the HTTP API from its own OpenAPI document, against the running stack.

schemathesis generates requests for every operation of the document: its coverage phase (boundary
values, missing and extra fields, wrong types, undeclared media types and methods), then its
fuzzing phase (Hypothesis, valid and invalid data). The real gunicorn, relay and worker answer.
Each response is judged by schemathesis' own checks: no 5xx; a status the document lists for the
operation; the documented content type, headers and schema (errors: the Error object); a request
the document calls invalid is refused, and one it calls valid is never refused as malformed (400:
the document states every rule the server enforces; the state of things may still refuse it with
404, 409 or 422); a missing token gets 401; an undeclared method gets 405 and
an Allow header. Requests are sent signed in and aimed at real things (fuzz_world.py): the quiz's
sessions, quizzes and players; the leaderboard service's boards (every kind, `default`, deleted
ones), the players on them, their periods and keyset cursors, and its API keys. Score writes are
sent by the board's owner or one of its API keys, and now and then by someone else; players report
their own actions on boards that allow it. So most requests get past 401, 403 and 404, and every
operation answers some of them with success (`the_fuzzer_got_past_the_guards`, checked once the
cases ran).

Sizes: FUZZ_EXAMPLES fuzzing examples per operation (default 20: about 1,930 requests over the 38
operations, the coverage phase's ~1,150 included, some 40 s; register and login, which cost half a
second of scrypt each, get half of it, guest three times; FUZZ_EXAMPLES=100: ~5,050 requests, about
two minutes). FUZZ_SEED picks another run; a run is reproducible.
`FUZZ_EXAMPLES=200 .venv/bin/python -m pytest tests/e2e/test_fuzz.py` digs deeper.

The 38 operations are 38 test items, but schemathesis 4.32 gives them one pytest node id under
pytest 9 (the operation shows in each failure's title and in its reproduction).
"""
from __future__ import annotations

import collections
import os
import uuid
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from schemathesis import checks

from app.web.api import (  # noqa: F401 - every route
    api_keys,
    auth,
    images,
    leaderboards,
    quizzes,
    scores,
    session_boards,
    sessions,
)
from app.web.api.openapi import build_document
from tests.e2e.fuzz_world import PLACEHOLDER, Room, World
from tests.helpers import Api, HttpClient, Player

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))
FUZZ_SEED = int(os.environ.get("FUZZ_SEED", "20261122"))

CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_headers_conformance, checks.response_schema_conformance,
          checks.negative_data_rejection, checks.positive_data_acceptance, checks.missing_required_header,
          checks.unsupported_method,
          checks.allow_header_conformance]

DOCUMENT = build_document()
# Operations whose only inputs are a token and ids (strings: every value is valid) have nothing
# to make invalid but the token, which the coverage phase already leaves out; their fuzzing budget
# goes to valid requests. Logout keeps fuzzing tokens for all of them (they share one check).
ID_ONLY = [f"{method.upper()} {path}" for path, operations in DOCUMENT["paths"].items()
           for method, operation in operations.items()
           if "requestBody" not in operation and all(p["in"] == "path" for p in operation["parameters"])
           and path != "/api/v1/auth/logout"]

# Values random generation rarely hits (padding and control characters around text, over-long text
# made of spaces, other spellings of ids, big integers; the leaderboard service's edges: the reserved
# board `default`, ids and player ids at and over their lengths, time zones, the exact score range
# ±(2^53 - 1) and one beyond, max_entries and self_report_max bounds), mixed into the strings and
# integers the fuzzing phase draws: the valid ones into valid requests, the others into invalid ones.
EDGE_STRINGS = [
    "", " ", "   ", "Ann\t", "\nAnn", "Ann\r\n", "\x0bAnn\x0c", "Ann\x1f", "Ann\x00", "\u00a0Ann\u2028",
    "Ann" + " " * 40, "a" + " " * 210, "a" + "\n" * 510, "Zoë", "名前", "🙂" * 33, "e\u0301" * 20,
    "00000000-0000-0000-0000-000000000000", "{12345678-1234-5678-1234-567812345678}",
    "urn:uuid:12345678-1234-5678-1234-567812345678", "12345678123456781234567812345678",
    "../..", "%2e%2e%2f", "a/b", "?x=1#y", "000000", "999999", "0123456", "1e400", "NaN", "null", "true",
    "default", "all", "2026-W53", "UTC", "Etc/GMT+14", "lbk_", "a" * 64, "a" * 65, "a" * 128, "a" * 129,
]
EDGE_INTEGERS = [-1, 0, 1, 5, 6, 100, 101, 240, 241, 10**7, 10**7 + 1, 2**31 - 1, 2**31, 2**53 - 1, 2**53,
                 -(2**53 - 1), -(2**53), 2**53 + 1, 2**63, -(2**63) - 1, 10**30]

# The document is the one the application builds (the `world` fixture checks the server serves
# the same). It is loaded at import: schemathesis 4.32's lazy loader (`schemathesis.pytest.
# from_fixture`) reads `Node._nodeid`, which pytest 9 no longer has.
schema = schemathesis.openapi.from_dict(DOCUMENT, config=schemathesis.Config.from_dict({
    "seed": FUZZ_SEED,
    "dictionaries": {"edge-strings": {"values": EDGE_STRINGS}, "edge-integers": {"values": EDGE_INTEGERS}},
    "generation": {"max-examples": FUZZ_EXAMPLES, "database": "none", "dictionaries": {
        "string": {"dictionary": "edge-strings", "probability": 0.2},  # path, query, headers
        "integer": {"dictionary": "edge-integers", "probability": 0.2}}},
    "parameters": {  # body fields take them by name
        **{f"body.{field}": {"dictionary": "edge-strings", "probability": 0.5} for field in (
            "username", "password", "nickname", "title", "questions[*].text", "questions[*].choices[*]",
            "question_id", "session_id", "id", "name", "timezone", "player_id", "display_name",
            "submission_id", "action", "scores[*].player_id", "scores[*].display_name",
            "scores[*].submission_id")},
        **{f"body.{field}": {"dictionary": "edge-integers", "probability": 0.25} for field in (
            "choice", "questions[*].correct_choice", "questions[*].time_limit_s", "questions[*].points",
            "score", "scores[*].score", "max_entries", "self_report_max")},
    },
    # A request line over the server's limit (gunicorn answers 414 before the app) is refused too.
    "checks": {"negative_data_rejection": {"expected-statuses": [
        "400", "401", "403", "404", "405", "406", "409", "414", "415", "422", "428", "429", "5xx"]},
        # Every refusal but 400 (malformed): the state of things (404, 409, 410, 422), who asks, limits.
        "positive_data_acceptance": {"expected-statuses": [
            "2xx", "401", "403", "404", "409", "410", "413", "414", "422", "429", "5xx"]}},
    "phases": {"examples": {"enabled": False}, "stateful": {"enabled": False}},
    "operations": [
        {"include-path-regex": "^/api/v1/auth/(register|login)$",
         "generation": {"max-examples": max(5, FUZZ_EXAMPLES // 2)}},
        {"include-name": "POST /api/v1/auth/guest",  # cheap, and text people type
         "generation": {"max-examples": 3 * FUZZ_EXAMPLES}},
        {"include-name": ID_ONLY, "phases": {"fuzzing": {"generation": {"mode": "positive"}}}},
    ],
}))


@schema.auth(refresh_interval=None, retry_on=[])
class Bearer:
    """Every operation that declares the bearer scheme gets a token (schemathesis leaves it out, or
    garbles it, in the requests that test exactly that). Requests of the coverage phase are built at
    collection, before any user exists: they carry a placeholder, replaced when they are sent."""

    def get(self, case, context):
        return PLACEHOLDER

    def set(self, case, data, context):
        case.headers["Authorization"] = f"Bearer {data}"


@pytest.fixture(scope="module")
def world(live_stack) -> Iterator[World]:
    """The fuzzed world. Once every case of the module ran, the run itself is checked
    (`the_fuzzer_got_past_the_guards`): with the cases that made it, whichever of them were selected."""
    served = requests.get(f"{live_stack.base_url}/api/v1/openapi.json", timeout=30)
    assert served.status_code == 200 and served.json() == DOCUMENT, "the server serves another document"
    world = World(Api(HttpClient(live_stack.base_url)), FUZZ_SEED, FUZZ_EXAMPLES)
    yield world
    the_fuzzer_got_past_the_guards(world)


@pytest.fixture(scope="module")
def http():
    with requests.Session() as session:
        yield session


@pytest.mark.timeout(max(300, 3 * FUZZ_EXAMPLES))
@schema.parametrize()
def test_every_answer_is_documented(case, world: World, http: requests.Session, live_stack):
    world.prepare(case)
    response = case.call(base_url=live_stack.base_url, session=http, timeout=30)
    world.record(case, response)
    try:
        case.validate_response(response, checks=CHECKS, transport_kwargs={"base_url": live_stack.base_url})
    except BaseException:
        world.failed.add(case.operation.label)
        raise


def the_fuzzer_got_past_the_guards(world: World) -> None:
    """Each operation the run fuzzed answered some request with success (real tokens and ids got
    through), and rate limits refused few (the fuzzer learns nothing from 429)."""
    assert world.statuses, "the fuzzed cases sent no request"
    statuses = sorted(world.statuses.items())
    table = "\n".join(f"  {label}: {dict(sorted(counts.items()))}" for label, counts in statuses)
    unreached = [label for label, counts in statuses
                 if label not in world.failed and not any(200 <= status < 300 for status in counts)]
    throttled = [label for label, counts in statuses if counts[429] > 0.1 * sum(counts.values())]
    assert not unreached, f"never a 2xx for {unreached}; statuses:\n{table}"
    assert not throttled, f"over 10% of 429 for {throttled}; statuses:\n{table}"
    print(f"{world.sent} requests; statuses by operation (undeclared methods left out):\n{table}")


def _lobby_world() -> tuple[World, Room]:
    """A world of one lobby and nothing else, built without the stack: what aiming and recording need."""
    host = Player("host-token", str(uuid.uuid4()), "host")
    removable = [str(uuid.uuid4()) for _ in range(2)]
    room = Room(str(uuid.uuid4()), "123456", host, [str(uuid.uuid4())], participant_ids=list(removable),
                removable=list(removable))
    world = World.__new__(World)
    world.api = Api(None)  # nothing here is sent: the cases carry no token placeholder to fill
    world.seed, world.hosts, world.outsider = FUZZ_SEED, [host], host
    world.lobby = world.rooms = [room]
    world.open, world.control, world.finish, world.ended, world.spare_games = [], [], [], [], []
    world.statuses, world.failed, world.sent = collections.defaultdict(collections.Counter), set(), 0
    return world, room


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_only_a_removal_uses_up_a_removable_player(method: str):
    """A request aimed at a player kept for removal moves them out of the pool when it succeeds only if
    it removed them: a read of their place (GET .../leaderboard/{id}, 200) leaves them to be removed."""
    path = {"GET": "/api/v1/sessions/{session_id}/leaderboard/{participant_id}",
            "DELETE": "/api/v1/sessions/{session_id}/participants/{participant_id}"}[method]
    success = requests.Response()
    success.status_code = 200
    aimed = 0
    for generated in range(20):  # generated ids: the aim replaces most with a player kept for removal
        world, room = _lobby_world()
        case = schema[path][method].Case(path_parameters={"session_id": "s",
                                                          "participant_id": f"p{generated}"})
        world.prepare(case)
        target = case.path_parameters["participant_id"]
        if target not in room.removable:
            continue
        aimed += 1
        world.record(case, success)
        left = ([p for p in room.participant_ids if p != target] if method == "DELETE"
                else room.participant_ids)
        assert room.removable == left, f"{method} {path} -> 200 left {room.removable}"
    assert aimed, f"no {method} was aimed at a player kept for removal"
