"""Answers over HTTP against the real PostgreSQL: every status in order, the server's deadline,
concurrent duplicates, atomicity with the event, scoring and streaks, and a crowd joining at once."""
from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from app.quiz.domain.scoring import base_points
from tests.helpers import Api, error_code, events_of, sample_questions

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
