"""What a classroom needs from a game, through the API: unique nicknames, a place taken back from
another device, a locked room, a removed player, an ended game's PIN, a get-ready moment, true/false
and poll questions, and a host's screen restored on reload."""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import text

from app.quiz.service import sessions as session_service
from tests.helpers import Api, sample_questions
from tests.integration.worker_support import drain, event_rows, new_worker, publish, redis_scores


def _lobby(api: Api, questions=None):
    host = api.host()
    session = api.live_session(host, questions)
    return host, session["id"], session


def _error(response) -> str:
    return response.get_json()["error"]["code"]


def test_a_nickname_is_unique_in_a_game_whatever_its_case_and_spaces(api: Api):
    _, sid, _ = _lobby(api)
    api.post(f"/api/v1/sessions/{sid}/join", {"nickname": "Ada"}, token=api.guest().token, expect=201)
    for taken in ("Ada", "ada", "  ADA "):
        refused = api.post(f"/api/v1/sessions/{sid}/join", {"nickname": taken}, token=api.guest().token,
                           expect=409)
        assert _error(refused) == "nickname_taken"
    api.post(f"/api/v1/sessions/{sid}/join", {"nickname": "Ada L"}, token=api.guest().token, expect=201)
    assert api.get(f"/api/v1/sessions/{sid}", token=api.guest().token,
                   expect=200).get_json()["player_count"] == 2


def test_a_player_takes_their_place_back_on_another_device_and_nobody_else_can(api: Api, engine):
    host, sid, _ = _lobby(api)
    first_device = api.guest()
    joined = api.post(f"/api/v1/sessions/{sid}/join", {"nickname": "Ben"}, token=first_device.token,
                      expect=201).get_json()
    code = joined["rejoin_code"]
    assert len(code) == 6
    question = api.next_question(sid, host)
    api.answer(sid, first_device, question["question_id"], 0)

    thief = api.guest()
    guessed = api.post(f"/api/v1/sessions/{sid}/rejoin", {"nickname": "Ben", "rejoin_code": "AAAAAA"},
                       token=thief.token, expect=404)
    assert _error(guessed) == "no_such_player"

    second_device = api.guest()
    typed = code[:3].lower() + "-" + code[3:]
    moved = api.post(f"/api/v1/sessions/{sid}/rejoin", {"nickname": "ben", "rejoin_code": typed},
                     token=second_device.token, expect=200).get_json()
    assert moved["participant_id"] == joined["participant_id"] and moved["rejoin_code"] != code
    # The place (its answer included) is the new device's; the old one is out.
    again = api.answer(sid, second_device, question["question_id"], 0, expect=200).get_json()
    assert again["choice"] == 0
    assert _error(api.answer(sid, first_device, question["question_id"], 0, expect=403)) == "not_joined"
    # The old code no longer works.
    api.post(f"/api/v1/sessions/{sid}/rejoin", {"nickname": "Ben", "rejoin_code": code},
             token=api.guest().token, expect=404)


def test_a_locked_room_takes_nobody_new_until_it_opens_again(api: Api):
    host, sid, _ = _lobby(api)
    api.join(sid, api.guest())
    assert api.post(f"/api/v1/sessions/{sid}/lock", {"locked": True}, token=host.token,
                    expect=200).get_json()["locked"] is True
    refused = api.post(f"/api/v1/sessions/{sid}/join", token=api.guest().token, expect=409)
    assert _error(refused) == "room_locked"
    assert api.get(f"/api/v1/sessions/{sid}", token=host.token, expect=200).get_json()["locked"] is True
    api.post(f"/api/v1/sessions/{sid}/lock", {"locked": True}, token=api.guest().token, expect=403)
    api.post(f"/api/v1/sessions/{sid}/lock", {"locked": False}, token=host.token, expect=200)
    api.join(sid, api.guest())


def test_a_removed_player_leaves_the_board_and_cannot_come_back(api: Api, topics, engine, redis_client):
    host, sid, _ = _lobby(api)
    kept, removed = api.join(sid, api.guest()), api.join(sid, api.guest())
    question = api.next_question(sid, host)
    api.answer(sid, removed, question["question_id"], question["position"] % 4)
    place = f"/api/v1/sessions/{sid}/participants/{removed.participant_id}"
    assert _error(api.delete(place, token=kept.token, expect=403)) == "not_host"
    assert api.delete(place, token=host.token, expect=200).get_json()["player_count"] == 1
    assert _error(api.post(f"/api/v1/sessions/{sid}/join", token=removed.token, expect=403)) == "removed"
    assert _error(api.answer(sid, removed, question["question_id"], 0, expect=403)) == "removed"
    api.close_question(sid, host)
    worker = new_worker(topics, engine, redis_client)
    try:
        drain(worker, publish(topics, event_rows(engine, sid)))
    finally:
        worker.close()
    assert set(redis_scores(redis_client, sid)) == {kept.participant_id}
    board = api.get(f"/api/v1/sessions/{sid}/leaderboard", token=host.token, expect=200).get_json()
    assert [e["participant_id"] for e in board["entries"]] == [kept.participant_id]
    assert api.get(f"/api/v1/sessions/{sid}", token=host.token, expect=200).get_json()["player_count"] == 1


def test_an_ended_games_pin_says_it_ended(api: Api):
    host, sid, session = _lobby(api)
    api.post(f"/api/v1/sessions/{sid}/end", token=host.token, expect=200)
    ended = api.get("/api/v1/sessions", token=api.guest().token, expect=410, join_code=session["join_code"])
    assert _error(ended) == "session_ended"


def test_a_question_shows_before_its_answers_open(api: Api, app):
    host, sid, _ = _lobby(api, sample_questions(1, time_limit_s=30))
    player = api.join(sid, api.guest())
    with app.app_context():
        from app.web.extensions import get_db

        opened = session_service.open_next_question(get_db(), uuid.UUID(host.user_id), uuid.UUID(sid),
                                                    get_ready_s=60)
    instant = datetime.fromisoformat
    assert instant(opened["shown_at"]) < instant(opened["opened_at"]) < instant(opened["deadline"])
    early = api.answer(sid, player, opened["question_id"], 0, expect=409)
    assert _error(early) == "not_open_yet"
    current = api.get(f"/api/v1/sessions/{sid}", token=player.token,
                      expect=200).get_json()["current_question"]
    assert [instant(current[k]) for k in ("shown_at",
                                          "opened_at")] == [instant(opened[k]) for k in ("shown_at",
                                                                                                 "opened_at")]


def test_true_false_and_polls(api: Api, engine):
    host = api.host()
    quiz = api.post("/api/v1/quizzes", {"title": "Kinds", "questions": [
        {"kind": "true_false", "text": "The sun is a star.", "correct_choice": 0},
        {"kind": "poll", "text": "Best season?", "choices": ["Spring", "Summer", "Autumn", "Winter"]},
    ]}, token=host.token, expect=201).get_json()
    true_false, poll = quiz["questions"]
    assert (true_false["choices"], true_false["kind"]) == (["True", "False"], "true_false")
    assert (poll["correct_choice"], poll["points"], poll["kind"]) == (None, 0, "poll")
    for wrong in ({"text": "No answer", "choices": ["a", "b"]},
                  {"kind": "poll", "text": "Points", "choices": ["a", "b"], "points": 1000},
                  {"kind": "poll", "text": "Answer", "choices": ["a", "b"], "correct_choice": 0},
                  {"kind": "true_false", "text": "Three", "choices": ["a", "b", "c"], "correct_choice": 0}):
        api.post("/api/v1/quizzes", {"title": "Bad", "questions": [wrong]}, token=host.token, expect=400)

    session = api.post(f"/api/v1/quizzes/{quiz['id']}/sessions", token=host.token, expect=201).get_json()
    sid = session["id"]
    players = [api.join(sid, api.guest()) for _ in range(3)]
    first = api.next_question(sid, host)
    assert first["kind"] == "true_false"
    api.answer(sid, players[0], first["question_id"], 0)
    api.next_question(sid, host)  # closes the true/false
    second = api.get(f"/api/v1/sessions/{sid}", token=host.token, expect=200).get_json()["current_question"]
    assert second["kind"] == "poll" and second["answered"] == 0
    for player, choice in zip(players, (1, 1, 3)):
        api.answer(sid, player, second["id"], choice)
    closed = api.close_question(sid, host)
    assert (closed["correct_choice"], closed["choice_counts"]) == (None, [0, 2, 0, 1])
    with engine.connect() as connection:
        points = connection.execute(text("SELECT sum(points) FROM participant_answers "
                                         "WHERE question_id = :q"), {"q": second["id"]}).scalar()
        streak = connection.execute(text("SELECT streak FROM quiz_session_participants WHERE id = :p"),
                                    {"p": players[0].participant_id}).scalar()
    assert points == 0 and streak == 1  # a poll neither scores nor breaks a streak


def test_the_hosts_screen_comes_back_after_a_reload(api: Api):
    host, sid, _ = _lobby(api, sample_questions(2, time_limit_s=60))
    players = [api.join(sid, api.guest()) for _ in range(3)]
    question = api.next_question(sid, host)
    api.answer(sid, players[0], question["question_id"], 1)
    api.answer(sid, players[1], question["question_id"], 1)
    live = api.get(f"/api/v1/sessions/{sid}", token=host.token, expect=200).get_json()["current_question"]
    assert live["answered"] == 2 and "choice_counts" not in live and "correct_choice" not in live
    api.close_question(sid, host)
    closed = api.get(f"/api/v1/sessions/{sid}", token=host.token, expect=200).get_json()["current_question"]
    assert closed["choice_counts"][1] == 2 and sum(closed["choice_counts"]) == 2
    assert closed["correct_choice"] == sample_questions(2, time_limit_s=60)[0]["correct_choice"]
