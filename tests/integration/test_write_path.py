"""The HTTP write path against the real PostgreSQL: every status, atomicity, concurrency, scoring."""
from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import text

from app.quiz.domain.scoring import base_points
from tests.helpers import Api, sample_questions


def events_of(engine, session_id, event_type=None):
    query = "SELECT event_type, payload FROM events WHERE aggregate_id = :s"
    if event_type:
        query += " AND event_type = :t"
    with engine.connect() as connection:
        return connection.execute(text(query + " ORDER BY created_at, seq"),
                                  {"s": session_id, "t": event_type}).all()


def error_code(response) -> str:
    body = response.get_json()
    assert set(body) == {"error"} and isinstance(body["error"]["message"], str), body
    return body["error"]["code"]


# --- accounts and tokens -------------------------------------------------------------------------

def test_register_login_and_guest(api: Api):
    name = "ada_" + uuid.uuid4().hex[:6]
    created = api.post("/api/v1/auth/register", {"username": name, "password": "longenough"}, expect=201)
    assert created.get_json()["username"] == name
    assert error_code(api.post("/api/v1/auth/register", {"username": name, "password": "longenough"},
                               expect=409)) == "username_taken"
    login = api.post("/api/v1/auth/login", {"username": name, "password": "longenough"},
                     expect=200).get_json()
    assert login["token_type"] == "Bearer" and login["expires_in"] > 0 and login["access_token"]
    guest = api.post("/api/v1/auth/guest", {"nickname": "Zoë"}, expect=201).get_json()
    assert guest["user_id"] and guest["access_token"] and guest["token_type"] == "Bearer"


def test_bad_credentials_look_the_same_whether_or_not_the_user_exists(api: Api):
    name = "bob_" + uuid.uuid4().hex[:6]
    api.post("/api/v1/auth/register", {"username": name, "password": "longenough"}, expect=201)
    wrong_password = api.post("/api/v1/auth/login", {"username": name, "password": "wrong-one"}, expect=401)
    no_such_user = api.post("/api/v1/auth/login", {"username": name + "x", "password": "wrong-one"},
                            expect=401)
    assert wrong_password.get_json() == no_such_user.get_json()


@pytest.mark.parametrize("body", [
    {"username": "ab", "password": "longenough"},
    {"username": "x" * 33, "password": "longenough"},
    {"username": "has space", "password": "longenough"},
    {"username": "valid_name", "password": "short"},
    {"username": "valid_name"},
    {"username": 12345, "password": "longenough"},
    {"username": "valid_name", "password": "longenough", "admin": True},
])
def test_register_refuses_bad_bodies(api: Api, body):
    assert error_code(api.post("/api/v1/auth/register", body, expect=400)) == "invalid_body"


@pytest.mark.parametrize("payload, content_type, status", [
    (b"{not json", "application/json", 400),
    (b"[1, 2]", "application/json", 400),
    (b"null", "application/json", 400),
    (b"username=a", "application/x-www-form-urlencoded", 415),
    (b'{"username": "' + b"a" * 400_000 + b'"}', "application/json", 413),
])
def test_malformed_requests_get_json_errors(client, payload, content_type, status):
    response = client.post("/api/v1/auth/register", data=payload, content_type=content_type)
    assert response.status_code == status
    error_code(response)


def test_unknown_routes_and_methods_are_json(client):
    assert error_code(client.get("/api/v1/nothing-here")) == "not_found"
    response = client.delete("/api/v1/auth/login")
    assert response.status_code == 405 and error_code(response) == "method_not_allowed"


def test_bearer_token_is_required_and_checked(api: Api, client, config):
    host = api.host()
    path = "/api/v1/quizzes"
    body = {"title": "t", "questions": sample_questions(1)}
    assert client.post(path, json=body).status_code == 401
    assert client.post(path, json=body, headers={"Authorization": "Token abc"}).status_code == 401
    assert client.post(path, json=body, headers={"Authorization": "Bearer " + host.token[:-2] + "xx"}
                       ).status_code == 401
    other_secret = URLSafeTimedSerializer("another-secret", salt="livequiz.access-token").dumps(
        {"u": host.user_id, "g": False})
    assert client.post(path, json=body,
                       headers={"Authorization": "Bearer " + other_secret}).status_code == 401

    class PastSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return super().get_timestamp() - config.token_ttl_s - 60

    expired = URLSafeTimedSerializer(config.secret_key, salt="livequiz.access-token",
                                     signer=PastSigner).dumps(
        {"u": host.user_id, "g": False})
    response = client.post(path, json=body, headers={"Authorization": "Bearer " + expired})
    assert response.status_code == 401 and "expired" in response.get_json()["error"]["message"]
    assert client.post(path, json=body, headers=host.headers).status_code == 201


# --- quizzes -------------------------------------------------------------------------------------

def test_quiz_is_created_with_positions_and_defaults(api: Api):
    host = api.host()
    quiz = api.post("/api/v1/quizzes", {"title": "Rivers", "questions": [
        {"text": "Longest?", "choices": ["Nile", "Amazon"], "correct_choice": 0},
        {"text": "Widest?", "choices": ["Nile", "Amazon", "Congo"], "correct_choice": 1, "points": 2000,
         "time_limit_s": 30},
    ]}, token=host.token, expect=201).get_json()
    assert [q["position"] for q in quiz["questions"]] == [0, 1]
    assert (quiz["questions"][0]["time_limit_s"], quiz["questions"][0]["points"]) == (20, 1000)
    assert all(uuid.UUID(q["id"]) for q in quiz["questions"])
    assert api.get(f"/api/v1/quizzes/{quiz['id']}", token=host.token, expect=200).get_json() == quiz
    assert error_code(api.get(f"/api/v1/quizzes/{quiz['id']}", token=api.host().token,
                              expect=404)) == "not_found"
    assert api.get("/api/v1/quizzes/not-a-uuid", token=host.token).status_code == 404


def test_guests_cannot_write_quizzes(api: Api):
    guest = api.guest()
    response = api.post("/api/v1/quizzes", {"title": "t", "questions": sample_questions(1)},
                        token=guest.token, expect=403)
    assert error_code(response) == "registered_users_only"


@pytest.mark.parametrize("question_change", [
    {"choices": ["only one"]},
    {"choices": ["a", "b", "c", "d", "e", "f", "g"]},
    {"correct_choice": 4},
    {"correct_choice": -1},
    {"time_limit_s": 4},
    {"time_limit_s": 241},
    {"points": 500},
    {"text": ""},
    {"correct_choice": "1"},
])
def test_quiz_validation(api: Api, question_change):
    question = {**sample_questions(1)[0], **question_change}
    api.post("/api/v1/quizzes", {"title": "t", "questions": [question]}, token=api.host().token, expect=400)


def test_quiz_needs_one_to_a_hundred_questions(api: Api):
    host = api.host()
    api.post("/api/v1/quizzes", {"title": "t", "questions": []}, token=host.token, expect=400)
    api.post("/api/v1/quizzes", {"title": "t", "questions": sample_questions(101)}, token=host.token,
             expect=400)
    api.post("/api/v1/quizzes", {"title": "t", "questions": sample_questions(100)}, token=host.token,
             expect=201)


# --- sessions ------------------------------------------------------------------------------------

def test_session_lifecycle_and_its_events(api: Api, engine):
    host = api.host()
    session = api.live_session(host)
    sid = session["id"]
    assert session["status"] == "lobby" and len(session["join_code"]) == 6 and session["join_code"].isdigit()
    found = api.get("/api/v1/sessions", token=host.token, join_code=session["join_code"],
                    expect=200).get_json()
    assert found["id"] == sid and found["player_count"] == 0 and found["current_question"] is None

    players = [api.join(sid, api.guest()) for _ in range(3)]
    opened = api.next_question(sid, host)
    assert opened["position"] == 0 and opened["deadline"] > opened["opened_at"]
    view = api.get(f"/api/v1/sessions/{sid}", token=players[0].token, expect=200).get_json()
    assert view["status"] == "question_open" and view["player_count"] == 3
    assert "correct_choice" not in view["current_question"]
    assert view["current_question"]["id"] == opened["question_id"]

    api.answer(sid, players[0], opened["question_id"], 0)
    api.answer(sid, players[1], opened["question_id"], 1)
    closed = api.close_question(sid, host)
    assert closed["correct_choice"] == 0 and closed["choice_counts"] == [1, 1, 0, 0]
    assert api.get(f"/api/v1/sessions/{sid}",
                   token=host.token).get_json()["current_question"]["correct_choice"] == 0
    assert error_code(api.post(f"/api/v1/sessions/{sid}/questions/close", token=host.token, expect=409)
                      ) == "no_open_question"

    second = api.next_question(sid, host)
    assert second["position"] == 1
    # "next" on the last question is refused and leaves it open.
    assert error_code(api.post(f"/api/v1/sessions/{sid}/questions/next", token=host.token, expect=409)
                      ) == "no_more_questions"
    api.post(f"/api/v1/sessions/{sid}/end", token=host.token, expect=200)
    assert api.get(f"/api/v1/sessions/{sid}", token=host.token).get_json()["status"] == "ended"
    assert error_code(api.post(f"/api/v1/sessions/{sid}/end", token=host.token,
                               expect=409)) == "session_ended"
    assert error_code(api.post(f"/api/v1/sessions/{sid}/join", token=api.guest().token, expect=409)
                      ) == "session_ended"
    ended = api.get("/api/v1/sessions", token=host.token, join_code=session["join_code"], expect=410)
    assert error_code(ended) == "session_ended"

    kinds = [row.event_type for row in events_of(engine, sid)]
    assert kinds == ["participant_joined"] * 3 + ["question_opened", "answer_scored", "answer_scored",
                                                   "question_closed", "question_opened", "question_closed",
                                                   "session_ended"]


def test_next_closes_the_open_question_first(api: Api, engine):
    host = api.host()
    sid = api.live_session(host)["id"]
    api.next_question(sid, host)
    api.next_question(sid, host)
    kinds = [row.event_type for row in events_of(engine, sid)]
    assert kinds == ["question_opened", "question_closed", "question_opened"]
    assert events_of(engine, sid, "question_closed")[0].payload["reason"] == "next"


def test_only_the_host_controls_the_session(api: Api):
    host = api.host()
    sid = api.live_session(host)["id"]
    player = api.join(sid, api.guest())
    for action in ("questions/next", "questions/close", "end"):
        assert error_code(api.post(f"/api/v1/sessions/{sid}/{action}", token=player.token,
                                   expect=403)) == "not_host"
    other_host = api.host()
    api.post(f"/api/v1/quizzes/{api.quiz(host)['id']}/sessions", token=other_host.token, expect=404)


def test_join_statuses(api: Api):
    host = api.host()
    sid = api.live_session(host)["id"]
    player = api.guest("Kim")
    first = api.post(f"/api/v1/sessions/{sid}/join", token=player.token, expect=201).get_json()
    assert first["nickname"] == "Kim"
    again = api.post(f"/api/v1/sessions/{sid}/join", token=player.token, expect=409).get_json()
    assert (again["error"]["code"] == "already_joined"
            and again["error"]["participant_id"] == first["participant_id"])
    api.post(f"/api/v1/sessions/{uuid.uuid4()}/join", token=player.token, expect=404)
    api.post("/api/v1/sessions/xyz/join", token=player.token, expect=404)
    assert error_code(api.post(f"/api/v1/sessions/{sid}/join", token=host.token,
                               expect=403)) == "host_cannot_join"
    api.get("/api/v1/sessions", token=host.token, join_code="12ab56", expect=400)


def test_late_joiners_are_welcome(api: Api):
    host = api.host()
    sid = api.live_session(host)["id"]
    api.next_question(sid, host)
    api.join(sid, api.guest())


# --- answers -------------------------------------------------------------------------------------

def test_answer_statuses_in_order(api: Api, engine):
    host = api.host()
    sid = api.live_session(host)["id"]
    player = api.join(sid, api.guest())
    outsider = api.guest()
    question = api.next_question(sid, host)
    qid = question["question_id"]

    assert error_code(api.answer(str(uuid.uuid4()), player, qid, 0, expect=404)) == "not_found"
    assert error_code(api.answer(sid, outsider, qid, 0, expect=403)) == "not_joined"
    # Well-formed, but not this question, or not one of its choices: the state says no (409, 422), not 400.
    assert error_code(api.answer(sid, player, str(uuid.uuid4()), 0, expect=409)) == "invalid_question"
    assert error_code(api.answer(sid, player, qid, 4, expect=422)) == "invalid_choice"
    api.post(f"/api/v1/sessions/{sid}/answers", {"question_id": "nope", "choice": 0}, token=player.token,
             expect=400)
    api.post(f"/api/v1/sessions/{sid}/answers", {"question_id": "{" + qid + "}", "choice": 0},
             token=player.token, expect=400)  # an id is written 8-4-4-4-12 only
    api.post(f"/api/v1/sessions/{sid}/answers", {"question_id": qid, "choice": "0"}, token=player.token,
             expect=400)

    receipt = api.answer(sid, player, qid, 0).get_json()
    assert set(receipt) == {"answer_id", "question_id", "choice", "answered_ms"}
    # A retry of the same answer gets its original receipt; another choice is refused with it.
    assert api.answer(sid, player, qid, 0, expect=200).get_json() == receipt
    refused = api.answer(sid, player, qid, 1, expect=409).get_json()["error"]
    assert refused["code"] == "already_answered" and refused["answer"] == receipt

    late = api.join(sid, api.guest())
    api.close_question(sid, host)
    assert error_code(api.answer(sid, late, qid, 0, expect=409)) == "question_closed"
    # After the close, a retry of a recorded answer still learns that it counted.
    assert api.answer(sid, player, qid, 0, expect=200).get_json() == receipt


def test_answers_after_the_deadline_are_refused_by_the_server_clock(api: Api, engine):
    host = api.host()
    sid = api.live_session(host)["id"]
    player = api.join(sid, api.guest())
    qid = api.next_question(sid, host)["question_id"]
    with engine.begin() as connection:
        connection.execute(text("UPDATE quiz_sessions "
                                "SET question_deadline = clock_timestamp() - interval '1 ms' WHERE id = :s"),
                           {"s": sid})
    assert error_code(api.answer(sid, player, qid, 0, expect=409)) == "question_closed"
    assert events_of(engine, sid, "answer_scored") == []


def test_fifty_identical_concurrent_answers_record_one_and_all_get_its_receipt(app, api: Api, engine):
    host = api.host()
    sid = api.live_session(host)["id"]
    player = api.join(sid, api.guest())
    qid = api.next_question(sid, host)["question_id"]

    def post(_):
        response = app.test_client().post(f"/api/v1/sessions/{sid}/answers",
                                          json={"question_id": qid, "choice": 0}, headers=player.headers)
        return response.status_code, response.get_json()["answer_id"]

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(post, range(50)))
    assert sorted(status for status, _ in results) == [200] * 49 + [201]
    assert len({answer_id for _, answer_id in results}) == 1, "every retry gets the one recorded answer"
    assert len(events_of(engine, sid, "answer_scored")) == 1
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM participant_answers WHERE quiz_session_id = :s"),
                                  {"s": sid}).scalar() == 1


def test_a_failed_event_insert_leaves_no_answer_and_no_score(api: Api, engine, caplog):
    host = api.host()
    sid = api.live_session(host)["id"]
    player = api.join(sid, api.guest("explode-" + uuid.uuid4().hex[:6]))
    qid = api.next_question(sid, host)["question_id"]
    trigger = f"fail_answer_event_{uuid.uuid4().hex[:8]}"
    with engine.begin() as connection:
        connection.execute(text(f"""
            CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'outbox unavailable'; END $$"""))
        connection.execute(text(f"""
            CREATE TRIGGER {trigger} BEFORE INSERT ON events FOR EACH ROW
            WHEN (NEW.payload->>'nickname' = '{player.nickname}') EXECUTE FUNCTION {trigger}()"""))
    try:
        response = api.answer(sid, player, qid, 0, expect=500)
        assert error_code(response) == "internal_error" and "outbox" not in response.get_data(as_text=True)
        # The failure is logged, but never the SQL parameters (the nickname travels in one).
        logged = "\n".join(record.getMessage() + (caplog.text or "") for record in caplog.records)
        assert "outbox unavailable" in logged and player.nickname not in logged
    finally:
        with engine.begin() as connection:
            connection.execute(text(f"DROP TRIGGER {trigger} ON events"))
            connection.execute(text(f"DROP FUNCTION {trigger}()"))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM participant_answers WHERE quiz_session_id = :s"),
                                  {"s": sid}).scalar() == 0
        assert connection.execute(text("SELECT score, streak FROM quiz_session_participants WHERE id = :p"),
                                  {"p": player.participant_id}).one() == (0, 0)
    assert events_of(engine, sid, "answer_scored") == []
    # Nothing was lost: the same answer goes through once the outbox works again.
    api.answer(sid, player, qid, 0, expect=201)
    assert len(events_of(engine, sid, "answer_scored")) == 1


# --- scoring -------------------------------------------------------------------------------------

def _answer_after(api: Api, engine, sid, player, qid, choice, elapsed_ms):
    """Answer as if `elapsed_ms` had passed since the question opened; also the most milliseconds the
    answer can have taken on top of that (from just before the question was moved back to the reply)."""
    started = time.monotonic()
    with engine.begin() as connection:
        connection.execute(text("""
            UPDATE quiz_sessions
               SET question_opened_at = clock_timestamp() - make_interval(secs => :ms / 1000.0),
                   question_deadline = clock_timestamp() - make_interval(secs => :ms / 1000.0)
                                       + make_interval(secs => 20)
            WHERE id = :s"""), {"ms": elapsed_ms, "s": sid})
    answer_id = api.answer(sid, player, qid, choice).get_json()["answer_id"]
    took_ms = (time.monotonic() - started) * 1000
    return next(row.payload for row in events_of(engine, sid, "answer_scored")
                if row.payload["answer_id"] == answer_id), took_ms


@pytest.mark.parametrize("elapsed_ms", [0, 250, 10_000, 19_750])
def test_points_follow_the_answer_time(api: Api, engine, elapsed_ms):
    host = api.host()
    sid = api.live_session(host, sample_questions(1, time_limit_s=20))["id"]
    player = api.join(sid, api.guest())
    question = api.next_question(sid, host)
    payload, took_ms = _answer_after(api, engine, sid, player, question["question_id"], 0, elapsed_ms)
    assert payload["correct"] is True
    assert elapsed_ms <= payload["answered_ms"] <= elapsed_ms + took_ms + 1  # +1: whole milliseconds
    assert payload["points"] == base_points(1000, payload["answered_ms"], 20)
    if elapsed_ms < 500 and payload["answered_ms"] < 500:
        assert payload["points"] == 1000
    if elapsed_ms == 19_750:
        assert 500 <= payload["points"] <= 510
    assert payload["total"] == payload["points"]


def test_streaks_across_wrong_and_missed_questions(api: Api, engine):
    host = api.host()
    questions = sample_questions(6)  # correct choice of question i is i % 4
    questions[5]["points"] = 0
    sid = api.live_session(host, questions)["id"]
    player = api.join(sid, api.guest())
    expected_streaks = []

    def play(position, choice):
        qid = api.next_question(sid, host)["question_id"]
        if choice is not None:
            payload, _ = _answer_after(api, engine, sid, player, qid, choice, 0)
            expected_streaks.append(payload["streak"])
            return payload
        return None

    first = play(0, 0)            # correct: streak 1, 1000
    second = play(1, 1)           # correct: streak 2, 1000 + 100
    third = play(2, 0)            # wrong: streak 0, 0
    fourth = play(3, 3)           # correct: streak 1, 1000
    play(4, None)                 # missed: streak reset at close
    sixth = play(5, 1)            # worth 0: scores nothing, streak untouched
    api.close_question(sid, host)
    assert [p["streak"] for p in (first, second, third, fourth)] == [1, 2, 0, 1]
    assert [p["points"] for p in (first, second, third, fourth)] == [1000, 1100, 0, 1000]
    assert (sixth["points"], sixth["streak"], sixth["correct"]) == (0, 0, True)
    with engine.connect() as connection:
        score, streak = connection.execute(text(
            "SELECT score, streak FROM quiz_session_participants WHERE id = :p"),
            {"p": player.participant_id}).one()
    assert (score, streak) == (3100, 0)
    assert sixth["total"] == 3100


# --- scale ---------------------------------------------------------------------------------------

def test_two_thousand_players_join_one_session_concurrently(app, api: Api, engine):
    host = api.host()
    sid = api.live_session(host)["id"]

    def guest_joins(i):
        client = Api(app.test_client())
        player = client.guest(f"player{i}")
        return client.post(f"/api/v1/sessions/{sid}/join", token=player.token).status_code

    with ThreadPoolExecutor(max_workers=32) as pool:
        statuses = list(pool.map(guest_joins, range(2000)))
    assert statuses.count(201) == 2000
    with engine.connect() as connection:
        participants = connection.execute(text(
            "SELECT count(*), count(DISTINCT user_id) FROM quiz_session_participants "
            "WHERE quiz_session_id = :s"), {"s": sid}).one()
    assert participants == (2000, 2000)
    assert len(events_of(engine, sid, "participant_joined")) == 2000
