"""The HTTP write path against the real PostgreSQL: accounts, quizzes and sessions, every status and
event (answers: test_answer_path.py)."""
from __future__ import annotations

import uuid

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from tests.helpers import Api, error_code, events_of, sample_questions

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
