"""The host's controls during a game, through the API and the board: a player removed and put back
at any time, more time for the open question, a get-ready length per quiz, the host's player list."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import text

from app import create_app
from app.core import redis_keys
from app.core.events import envelope_from_row
from app.quiz.board.apply import apply_event
from app.quiz.board.keys import SessionKeys
from app.quiz.board.rebuild import rebuild_session_board
from app.quiz.board.scripts import APPLIED, DUPLICATE, session_board_scripts
from app.quiz.board.verify import compare_session_board
from app.quiz.service import sessions as session_service
from tests.helpers import Api, sample_questions
from tests.integration.worker_support import (
    drain,
    event_rows,
    new_worker,
    pg_ranking,
    pg_scores,
    publish,
    redis_ranking,
    redis_scores,
)


def _error(response) -> str:
    return response.get_json()["error"]["code"]


def _apply_rows(redis_client, rows) -> list[int]:
    scripts = session_board_scripts(redis_client)
    return [apply_event(scripts, redis_client, envelope_from_row(row)) for row in rows]


def _through_the_worker(topics, engine, redis_client, rows) -> None:
    worker = new_worker(topics, engine, redis_client)
    try:
        drain(worker, publish(topics, rows))
    finally:
        worker.close()


def _new_rows(engine, sid, seen: set) -> list:
    rows = [r for r in event_rows(engine, sid) if r.id not in seen]
    seen |= {r.id for r in rows}
    return rows


def test_a_player_removed_mid_game_comes_back_with_the_points_they_had(api: Api, topics, engine,
                                                                         redis_client):
    host = api.host()
    questions = sample_questions(3, time_limit_s=240)
    sid = api.live_session(host, questions)["id"]
    kept, removed = api.join(sid, api.guest()), api.join(sid, api.guest())
    first = api.next_question(sid, host)
    for player in (kept, removed):
        api.answer(sid, player, first["question_id"], questions[0]["correct_choice"])
    api.close_question(sid, host)
    earned = pg_scores(engine, sid)[removed.participant_id]
    assert earned > 0
    second = api.next_question(sid, host)
    api.answer(sid, removed, second["question_id"], questions[1]["correct_choice"])
    place = f"/api/v1/sessions/{sid}/participants/{removed.participant_id}"
    api.delete(place, token=host.token, expect=200)
    assert _error(api.post(f"{place}/restore", token=kept.token, expect=403)) == "not_host"
    assert api.post(f"{place}/restore", token=host.token, expect=200).get_json()["player_count"] == 2
    assert _error(api.post(f"{place}/restore", token=host.token, expect=404)) == "not_found"
    # Back in the game: the same place, and the answer given before the removal counts for nothing.
    rejoined = api.post(f"/api/v1/sessions/{sid}/join", token=removed.token, expect=409)
    assert _error(rejoined) == "already_joined"
    api.close_question(sid, host)
    assert pg_scores(engine, sid)[removed.participant_id] == earned
    third = api.next_question(sid, host)
    api.answer(sid, removed, third["question_id"], questions[2]["correct_choice"], expect=201)

    _through_the_worker(topics, engine, redis_client, event_rows(engine, sid))
    assert redis_scores(redis_client, sid) == pg_scores(engine, sid)
    board = api.get(f"/api/v1/sessions/{sid}/leaderboard", token=host.token, expect=200).get_json()
    assert {e["participant_id"] for e in board["entries"]} == {kept.participant_id, removed.participant_id}
    listed = api.get(f"/api/v1/sessions/{sid}/participants", token=host.token, expect=200).get_json()
    players = listed["players"]
    mine = next(p for p in players if p["participant_id"] == removed.participant_id)
    assert (mine["removed"], mine["answered"], mine["rejoin_code"]) == (False, True, removed.rejoin_code)
    api.get(f"/api/v1/sessions/{sid}/participants", token=kept.token, expect=403)


def test_a_second_removal_and_its_undo_are_facts_of_their_own(api: Api, engine, redis_client):
    host = api.host()
    sid = api.live_session(host, sample_questions(2, time_limit_s=240))["id"]
    players = [api.join(sid, api.guest()) for _ in range(2)]
    place = f"/api/v1/sessions/{sid}/participants/{players[1].participant_id}"
    seen: set = set()
    rebuild_session_board(engine, redis_client, sid)
    _new_rows(engine, sid, seen)
    for _ in range(2):
        api.delete(place, token=host.token, expect=200)
        assert _apply_rows(redis_client, _new_rows(engine, sid, seen)) == [APPLIED]
        assert set(redis_scores(redis_client, sid)) == {players[0].participant_id}
        api.post(f"{place}/restore", token=host.token, expect=200)
        assert _apply_rows(redis_client, _new_rows(engine, sid, seen)) == [APPLIED]
        assert set(redis_scores(redis_client, sid)) == {p.participant_id for p in players}
    # Redis lost the session and the relay pruned its rows: a replay of every event changes nothing.
    rows = event_rows(engine, sid)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM events WHERE aggregate_id = :s"), {"s": sid})
    redis_client.delete(*redis_client.scan_iter(match=redis_keys.pattern(f"*{{{sid}}}*")))
    rebuild_session_board(engine, redis_client, sid)
    assert set(_apply_rows(redis_client, rows)) == {DUPLICATE}
    assert redis_scores(redis_client, sid) == pg_scores(engine, sid)


def test_a_rebuild_during_removals_restores_and_extensions_equals_the_applied_board(api: Api, engine,
                                                                                      redis_client):
    host = api.host()
    questions = sample_questions(2, time_limit_s=240)
    sid = api.live_session(host, questions)["id"]
    rebuild_session_board(engine, redis_client, sid)  # the board the worker applies to
    players = [api.join(sid, api.guest()) for _ in range(3)]
    first = api.next_question(sid, host)
    for player in players:
        api.answer(sid, player, first["question_id"], questions[0]["correct_choice"])
    api.close_question(sid, host)
    participants = f"/api/v1/sessions/{sid}/participants"
    api.delete(f"{participants}/{players[1].participant_id}", token=host.token, expect=200)
    second = api.next_question(sid, host)
    seen: set = set()
    assert set(_apply_rows(redis_client, _new_rows(engine, sid, seen))) == {APPLIED}
    applied_live: list = []

    def between_snapshot_and_swap() -> None:
        # Committed after the snapshot, applied live: the swap replays them onto the rebuilt board.
        api.post(f"{participants}/{players[1].participant_id}/restore", token=host.token, expect=200)
        api.delete(f"{participants}/{players[2].participant_id}", token=host.token, expect=200)
        api.post(f"/api/v1/sessions/{sid}/questions/extend", {"seconds": 10}, token=host.token, expect=200)
        applied_live.extend(_new_rows(engine, sid, seen))
        assert _apply_rows(redis_client, applied_live) == [APPLIED] * 3

    applied_board = None

    def remember_and_swap() -> None:
        nonlocal applied_board
        between_snapshot_and_swap()
        applied_board = (redis_scores(redis_client, sid), redis_ranking(redis_client, sid))

    rebuilt = rebuild_session_board(engine, redis_client, sid, before_swap=remember_and_swap)
    assert rebuilt.replayed == 2  # the removal and the undo (an extension moves no board)
    assert (redis_scores(redis_client, sid), redis_ranking(redis_client, sid)) == applied_board
    assert redis_scores(redis_client, sid) == pg_scores(engine, sid)
    assert redis_ranking(redis_client, sid) == pg_ranking(engine, sid)
    assert set(redis_scores(redis_client, sid)) == {players[0].participant_id, players[1].participant_id}
    # A later rebuild from PostgreSQL alone marks the same facts: their deliveries are duplicates.
    rebuild_session_board(engine, redis_client, sid)
    assert _apply_rows(redis_client, applied_live) == [DUPLICATE] * 3
    api.answer(sid, players[1], second["question_id"], questions[1]["correct_choice"])
    api.close_question(sid, host)
    assert set(_apply_rows(redis_client, _new_rows(engine, sid, seen))) == {APPLIED}
    assert redis_scores(redis_client, sid) == pg_scores(engine, sid)


def test_more_time_moves_the_deadline_that_answers_are_judged_by(api: Api, engine):
    host = api.host()
    questions = sample_questions(1, time_limit_s=20)
    sid = api.live_session(host, questions)["id"]
    player = api.join(sid, api.guest())
    api.join(sid, api.guest())  # never answers: the question stays open after the first player's answer
    extend = f"/api/v1/sessions/{sid}/questions/extend"
    assert _error(api.post(extend, {"seconds": 10}, token=host.token, expect=409)) == "no_open_question"
    opened = api.next_question(sid, host)
    assert _error(api.post(extend, {"seconds": 10}, token=player.token, expect=403)) == "not_host"
    api.post(extend, {"seconds": 0}, token=host.token, expect=400)
    extended = api.post(extend, {"seconds": 10}, token=host.token, expect=200).get_json()
    instant = datetime.fromisoformat
    assert instant(extended["deadline"]) - instant(opened["deadline"]) == timedelta(seconds=10)
    assert (extended["added_s"], extended["extra_s"]) == (10, 10)
    # A retry sent with the deadline its sender saw extends nothing more, and says so.
    retried = api.post(extend, {"seconds": 10, "deadline": opened["deadline"]}, token=host.token,
                       expect=200).get_json()
    assert retried["replayed"] is True and retried["extra_s"] == 10
    assert instant(retried["deadline"]) == instant(extended["deadline"])
    api.post(extend, {"seconds": 10, "deadline": "yesterday"}, token=host.token, expect=400)
    again = api.post(extend, {"seconds": 5, "deadline": extended["deadline"]}, token=host.token,
                     expect=200).get_json()
    assert (again["replayed"], again["extra_s"]) == (False, 15)
    seen = api.get(f"/api/v1/sessions/{sid}", token=player.token, expect=200).get_json()
    current = seen["current_question"]
    assert instant(current["deadline"]) == instant(again["deadline"])
    # The question's own time has passed; the extra seconds keep it open.
    with engine.begin() as connection:
        connection.execute(text("""
            UPDATE quiz_sessions SET question_opened_at = question_opened_at - interval '21 seconds',
                                     question_shown_at = question_shown_at - interval '21 seconds',
                                     question_deadline = question_deadline - interval '21 seconds'
            WHERE id = :s"""), {"s": sid})
    api.answer(sid, player, opened["question_id"], questions[0]["correct_choice"], expect=201)
    api.post(extend, {"seconds": 60}, token=host.token, expect=200)
    refused = api.post(extend, {"seconds": 50}, token=host.token, expect=409)
    assert _error(refused) == "too_much_time" and refused.get_json()["error"]["max_extra_s"] == 120
    with engine.begin() as connection:
        connection.execute(text("UPDATE quiz_sessions SET question_deadline = clock_timestamp() "
                                "- interval '1 second' WHERE id = :s"), {"s": sid})
    assert _error(api.post(extend, {"seconds": 10}, token=host.token, expect=409)) == "question_closed"


def test_the_time_a_host_may_add_is_a_setting(config, database):
    api = Api(create_app(config.replace(question_max_extra_s=15)).test_client())
    host = api.host()
    sid = api.live_session(host, sample_questions(1, time_limit_s=20))["id"]
    api.next_question(sid, host)
    extend = f"/api/v1/sessions/{sid}/questions/extend"
    api.post(extend, {"seconds": 10}, token=host.token, expect=200)
    refused = api.post(extend, {"seconds": 10}, token=host.token, expect=409)
    assert _error(refused) == "too_much_time" and refused.get_json()["error"]["max_extra_s"] == 15
    assert api.post(extend, {"seconds": 5}, token=host.token, expect=200).get_json()["extra_s"] == 15


def test_a_quiz_sets_how_long_its_questions_get_ready(api: Api):
    host = api.host()
    for get_ready_s in (0, 5):
        body = {"title": "Pace", "questions": sample_questions(1), "get_ready_s": get_ready_s}
        quiz = api.post("/api/v1/quizzes", body, token=host.token, expect=201).get_json()
        assert quiz["get_ready_s"] == get_ready_s
        read = api.get(f"/api/v1/quizzes/{quiz['id']}", token=host.token, expect=200).get_json()
        assert read["get_ready_s"] == get_ready_s
        game = api.post(f"/api/v1/quizzes/{quiz['id']}/sessions", token=host.token, expect=201).get_json()
        sid = game["id"]
        opened = api.next_question(sid, host)
        waited = datetime.fromisoformat(opened["opened_at"]) - datetime.fromisoformat(opened["shown_at"])
        assert waited == timedelta(seconds=get_ready_s)
    copied = api.post(f"/api/v1/quizzes/{quiz['id']}/copy", token=host.token, expect=201).get_json()
    assert copied["get_ready_s"] == 5
    for wrong in (6, -1, 1.5, "3"):
        api.post("/api/v1/quizzes", {"title": "Pace", "questions": sample_questions(1), "get_ready_s": wrong},
                 token=host.token, expect=400)
    unset = api.post("/api/v1/quizzes", {"title": "Pace", "questions": sample_questions(1)}, token=host.token,
                     expect=201).get_json()
    assert unset["get_ready_s"] is None


def test_a_removed_players_answer_does_not_close_the_question_for_the_others(api: Api, app):
    host = api.host()
    sid = api.live_session(host, sample_questions(1, time_limit_s=240))["id"]
    ada, bo, cy = (api.join(sid, api.guest()) for _ in range(3))
    question = api.next_question(sid, host)
    for player in (ada, cy):
        api.answer(sid, player, question["question_id"], 0)
    api.delete(f"/api/v1/sessions/{sid}/participants/{cy.participant_id}", token=host.token, expect=200)
    with app.app_context():
        from app.web.extensions import get_db

        due = {str(question.id) for question in session_service.find_due_questions(get_db())}
        assert sid not in due  # Bo has not answered
        api.answer(sid, bo, question["question_id"], 0)
        assert sid in {str(due.id) for due in session_service.find_due_questions(get_db())}


def test_a_player_put_back_mid_question_leaves_redis_as_postgres_has_it(api: Api, engine, redis_client):
    host = api.host()
    questions = sample_questions(1, time_limit_s=240)
    sid = api.live_session(host, questions)["id"]
    rebuild_session_board(engine, redis_client, sid)
    ada, bo = api.join(sid, api.guest()), api.join(sid, api.guest())
    api.join(sid, api.guest())  # has not answered: the question stays open
    question = api.next_question(sid, host)
    for player in (ada, bo):
        api.answer(sid, player, question["question_id"], questions[0]["correct_choice"])
    place = f"/api/v1/sessions/{sid}/participants/{bo.participant_id}"
    api.delete(place, token=host.token, expect=200)
    api.post(f"{place}/restore", token=host.token, expect=200)
    seen: set = set()
    assert set(_apply_rows(redis_client, _new_rows(engine, sid, seen))) == {APPLIED}
    assert compare_session_board(engine, redis_client, sid) == []
    pending = SessionKeys.of(sid).pending
    applied_pending = redis_client.hgetall(pending)
    assert set(applied_pending) == {ada.participant_id.encode()}  # Bo's answer counts for nothing
    rebuild_session_board(engine, redis_client, sid)
    assert redis_client.hgetall(pending) == applied_pending
    api.close_question(sid, host)
    _apply_rows(redis_client, _new_rows(engine, sid, seen))
    assert compare_session_board(engine, redis_client, sid) == []
    assert redis_scores(redis_client, sid) == pg_scores(engine, sid)
    assert pg_scores(engine, sid)[bo.participant_id] == 0
