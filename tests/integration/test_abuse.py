"""Fair play and abuse resistance through the HTTP API, against the real PostgreSQL and Redis.

Each test here reproduces a defect found by probing the running system (cheating, floods, bad input,
retries that were told the wrong outcome, leaks) and shows the answer the system now gives.
"""
from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import text

from app import create_app
from app.core.metrics import RATE_LIMIT_UNAVAILABLE
from app.quiz.board.keys import SessionKeys
from app.web.api.openapi import build_document
from app.web.headers import HEADERS
from tests.helpers import Api, sample_questions, wait_until


def error_of(response) -> dict:
    return response.get_json()["error"]


@pytest.fixture()
def strict(database, config):
    """An app whose limits are small enough to reach in a test; other tests' budgets are untouched
    because each test counts against identifiers of its own."""
    return create_app(config.replace(
        rate_login_per_username="3/minute", rate_signup_per_address="3/minute",
        rate_join_misses_per_user="3/minute", rate_join_per_user="5/minute"))


# --- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text_", ["a\u0000b", "\ud800"])
def test_text_postgresql_cannot_store_is_a_400_not_a_500(api: Api, text_):
    assert error_of(api.post("/api/v1/auth/login", {"username": text_, "password": "x"}, expect=400))[
        "code"] == "invalid_body"
    host = api.host()
    questions = sample_questions(1)
    for body in ({"title": text_, "questions": questions},
                 {"title": "t", "questions": [{**questions[0], "text": text_}]},
                 {"title": "t", "questions": [{**questions[0], "choices": ["a", text_]}]}):
        assert error_of(api.post("/api/v1/quizzes", body, token=host.token,
                                 expect=400))["code"] == "invalid_body"
    assert api.get("/api/v1/sessions", token=host.token, expect=400, join_code="12\u00004")


def test_a_repeated_query_parameter_is_refused(api: Api):
    host = api.host()
    sid = api.live_session(host)["id"]
    response = api.client.get(f"/api/v1/sessions/{sid}/leaderboard?offset=0&offset=5",
                              headers={"Authorization": f"Bearer {host.token}"})
    assert response.status_code == 400 and error_of(response)["code"] == "invalid_query"


# --- rate limits ---------------------------------------------------------------------------------

def test_wrong_logins_for_one_username_are_limited_with_retry_after(strict):
    client = strict.test_client()
    username = "victim_" + uuid.uuid4().hex[:8]
    statuses = [client.post("/api/v1/auth/login",
                            json={"username": username, "password": "guess"}).status_code
                for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    refused = client.post("/api/v1/auth/login", json={"username": username.upper(), "password": "guess"})
    assert refused.status_code == 429 and error_of(refused)["code"] == "too_many_requests"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


def test_accounts_per_address_are_limited_and_other_addresses_go_on(strict):
    client = strict.test_client()
    address = {"REMOTE_ADDR": f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.7"}
    statuses = [client.post("/api/v1/auth/guest", json={"nickname": "kid"}, environ_base=address).status_code
                for _ in range(4)]
    assert statuses == [201, 201, 201, 429]
    other = {"REMOTE_ADDR": "10.255.255.1" if address["REMOTE_ADDR"] != "10.255.255.1" else "10.255.255.2"}
    assert client.post("/api/v1/auth/guest", json={"nickname": "kid"}, environ_base=other).status_code == 201


def test_guessing_join_codes_runs_out_while_a_real_join_still_works(strict):
    api = Api(strict.test_client())
    host = api.host()
    session = api.live_session(host)
    guesser = api.guest()
    misses = [api.get("/api/v1/sessions", token=guesser.token, join_code=f"{n:06d}").status_code
              for n in range(999_990, 999_994)]
    assert misses[:3] == [404, 404, 404] and misses[3] == 429
    # Finding a real game is not a miss: a player who typed the code right is never refused for it.
    player = api.guest()
    found = api.get("/api/v1/sessions", token=player.token, expect=200,
                    join_code=session["join_code"]).get_json()
    assert found["id"] == session["id"]


def test_limits_fail_open_when_redis_is_down(database, config):
    down = create_app(config.replace(redis_url="redis://127.0.0.1:1/0", redis_cluster_nodes=""))
    before = RATE_LIMIT_UNAVAILABLE._value.get()
    response = down.test_client().post("/api/v1/auth/guest", json={"nickname": "offline"})
    assert response.status_code == 201
    assert RATE_LIMIT_UNAVAILABLE._value.get() > before


# --- tokens --------------------------------------------------------------------------------------

def test_logout_revokes_every_token_of_the_user(api: Api):
    host = api.host()
    other = api.post("/api/v1/auth/login", {"username": host.nickname, "password": "correct horse"},
                     expect=200).get_json()["access_token"]
    api.post("/api/v1/quizzes", {"title": "t", "questions": sample_questions(1)}, token=other, expect=201)
    api.post("/api/v1/auth/logout", token=host.token, expect=204)
    for token in (host.token, other):
        refused = api.post("/api/v1/quizzes", {"title": "t", "questions": sample_questions(1)}, token=token,
                           expect=401)
        assert "revoked" in error_of(refused)["message"]
    fresh = api.post("/api/v1/auth/login", {"username": host.nickname, "password": "correct horse"},
                     expect=200).get_json()["access_token"]
    api.post("/api/v1/quizzes", {"title": "t", "questions": sample_questions(1)}, token=fresh, expect=201)


# --- leaks ---------------------------------------------------------------------------------------

def test_the_public_view_of_a_session_shows_only_what_joining_needs(api: Api):
    host = api.host()
    session = api.live_session(host)
    player = api.join(session["id"], api.guest())
    api.next_question(session["id"], host)
    outsider = api.guest()
    public = api.get(f"/api/v1/sessions/{session['id']}", token=outsider.token, expect=200).get_json()
    assert set(public) == {"id", "status", "join_code", "player_count", "question_count", "locked"}
    by_code = api.get("/api/v1/sessions", token=outsider.token, expect=200,
                      join_code=session["join_code"]).get_json()
    assert set(by_code) == set(public)
    member = api.get(f"/api/v1/sessions/{session['id']}", token=player.token, expect=200).get_json()
    assert "host_id" not in member and member["current_question"]["text"]
    assert "correct_choice" not in member["current_question"]


def test_every_response_carries_the_security_headers(client):
    for path in ("/", "/host", "/api/v1/openapi.json", "/healthz", "/api/v1/no-such-thing"):
        response = client.get(path)
        for name, value in HEADERS.items():
            assert response.headers.get(name) == value, (path, name)
    assert "frame-ancestors 'none'" in HEADERS["Content-Security-Policy"]


def test_the_openapi_document_lists_every_status_a_route_returns():
    paths = build_document()["paths"]
    for action in ("next", "close"):
        assert "404" in paths[f"/api/v1/sessions/{{session_id}}/questions/{action}"]["post"]["responses"]
    assert "404" in paths["/api/v1/sessions/{session_id}/end"]["post"]["responses"]
    answer = paths["/api/v1/sessions/{session_id}/answers"]["post"]["responses"]
    assert {"200", "201", "409", "503", "504"} <= set(answer)
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert {"400", "429", "503"} <= set(operation["responses"]), (method, path)


# --- answers whose outcome the server cannot know at once ----------------------------------------

def _waiting_on_locks(engine) -> bool:
    with engine.connect() as connection:
        return bool(connection.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()")).scalar())


def _open_question(api: Api):
    host = api.host()
    sid = api.live_session(host)["id"]
    players = [api.join(sid, api.guest()) for _ in range(2)]
    return sid, players, api.next_question(sid, host)["question_id"]


def test_an_answer_stuck_in_a_transaction_is_outcome_unknown_then_its_retry_learns_it_counted(
        app, api: Api, engine, monkeypatch):
    sid, (player, other), qid = _open_question(api)
    batcher = app.extensions["livequiz"].answer_batcher
    monkeypatch.setattr(batcher, "WAIT_S", 1.0)
    results = {}

    def answer(name, who):
        results[name] = api.client.post(f"/api/v1/sessions/{sid}/answers",
                                        json={"question_id": qid, "choice": 0}, headers=who.headers)

    with engine.connect() as blocker:
        # Holding the session row FOR UPDATE (as a close does) stalls the answers' KEY SHARE lock.
        blocker.execute(text("SELECT id FROM quiz_sessions WHERE id = :s FOR UPDATE"), {"s": sid})
        first = threading.Thread(target=answer, args=("stuck", player))
        first.start()
        wait_until(lambda: _waiting_on_locks(engine), "the answer never reached the locked session row")
        queued = threading.Thread(target=answer, args=("queued", other))
        queued.start()
        first.join(30)
        queued.join(30)
        blocker.rollback()
    # In a transaction when the wait ran out: it may still commit, so it is neither recorded nor refused.
    assert results["stuck"].status_code == 504 and error_of(results["stuck"])["code"] == "outcome_unknown"
    assert results["stuck"].headers["Retry-After"] == "1"  # send it again, as after a 503
    # Never taken from the queue: certainly not recorded.
    assert results["queued"].status_code == 503 and results["queued"].headers["Retry-After"]
    # The stuck transaction commits once the lock is gone; the player's retry gets its receipt.
    retried = wait_until(lambda: (r := api.answer(sid, player, qid, 0, expect=None)).status_code == 200 and r,
                         "the stuck answer never committed")
    assert retried.get_json()["choice"] == 0
    api.answer(sid, other, qid, 0, expect=201)


def test_a_failing_commit_is_outcome_unknown_never_not_recorded(api: Api, engine):
    sid, (player, _), qid = _open_question(api)
    trigger = f"fail_commit_{uuid.uuid4().hex[:8]}"
    with engine.begin() as connection:
        connection.execute(text(f"""
            CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'the commit failed'; END $$"""))
        # A deferred constraint trigger raises at COMMIT, after every statement succeeded.
        connection.execute(text(f"""
            CREATE CONSTRAINT TRIGGER {trigger} AFTER INSERT ON participant_answers
            DEFERRABLE INITIALLY DEFERRED
            FOR EACH ROW WHEN (NEW.quiz_session_id = '{sid}') EXECUTE FUNCTION {trigger}()"""))
    try:
        response = api.answer(sid, player, qid, 0, expect=504)
        assert error_of(response)["code"] == "outcome_unknown"
    finally:
        with engine.begin() as connection:
            connection.execute(text(f"DROP TRIGGER {trigger} ON participant_answers"))
            connection.execute(text(f"DROP FUNCTION {trigger}()"))
    api.answer(sid, player, qid, 0, expect=201)  # it was not recorded: the retry records it once


# --- an ended session read after its keys expired ------------------------------------------------

def test_an_ended_sessions_board_rebuilt_on_read_keeps_an_expiry(api: Api, redis_client):
    host = api.host()
    sid = api.live_session(host)["id"]
    api.join(sid, api.guest())
    api.post(f"/api/v1/sessions/{sid}/end", token=host.token, expect=200)
    keys = SessionKeys.of(sid)
    redis_client.delete(*keys.apply_keys)  # as if they had expired
    api.get(f"/api/v1/sessions/{sid}/leaderboard", token=host.token, expect=200)
    for key in (keys.board, keys.applied, keys.meta, keys.names, keys.room):
        assert redis_client.ttl(key) > 0, key
