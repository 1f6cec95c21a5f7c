"""Use cases called directly, with a database session of the test's own (the `db` fixture): the rules of
the write path without HTTP."""
from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.accounts import users
from app.core.errors import Conflict, Forbidden, Gone, ServiceError
from app.quiz.domain import sessions as rules
from app.quiz.service import quizzes, sessions
from tests.helpers import sample_questions, wait_until


@pytest.fixture()
def lobby(db):
    host = users.create_guest(db, "host")
    quiz = quizzes.create_quiz(db, host.id, "Capitals", sample_questions(2))
    session = sessions.create_session(db, host.id, uuid.UUID(quiz["id"]))
    return host, quiz, uuid.UUID(session["id"]), session["join_code"]


def test_a_session_opens_in_the_lobby_with_a_live_join_code(db, lobby):
    _, _, session_id, code = lobby
    assert sessions.find_by_join_code(db, code) == session_id
    assert sessions.describe_session(db, session_id)["status"] == rules.LOBBY


def test_the_host_cannot_play_and_a_player_joins_once(db, lobby):
    host, _, session_id, _ = lobby
    with pytest.raises(Forbidden):
        sessions.join_session(db, host.id, session_id, None)
    player = users.create_guest(db, "Ann")
    joined = sessions.join_session(db, player.id, session_id, None)
    assert joined["nickname"] == "Ann"
    with pytest.raises(Conflict) as again:
        sessions.join_session(db, player.id, session_id, None)
    assert again.value.extra["participant_id"] == joined["participant_id"]


def test_an_ended_session_cannot_be_found_by_its_code_nor_joined(db, lobby):
    host, _, session_id, code = lobby
    sessions.end_session(db, host.id, session_id)
    with pytest.raises(Gone):  # a player typing that PIN learns the game is over, not that it never was
        sessions.find_by_join_code(db, code)
    with pytest.raises(Conflict):
        sessions.join_session(db, users.create_guest(db, "late").id, session_id, None)


def test_a_join_meeting_a_concurrent_one_gets_its_place_or_has_its_nickname_refused(db, engine, lobby):
    _, _, session_id, _ = lobby
    player, rival, third = (users.create_guest(db, name) for name in ("Bo", "Cy", "Di"))
    insert = text("INSERT INTO quiz_session_participants (id, quiz_session_id, user_id, nickname, "
                  "rejoin_code) VALUES (:id, :s, :u, :nickname, :code)")
    place = uuid.uuid4()
    results: dict[str, object] = {}

    def join(name: str, user_id: uuid.UUID, nickname: str | None) -> None:
        with Session(engine) as own:
            try:
                results[name] = sessions.join_session(own, user_id, session_id, nickname)
            except ServiceError as exc:
                results[name] = exc

    with engine.connect() as other_device:
        # Another device's join of Bo, and Cy's join, not committed yet when Bo and Di join as "cy".
        with other_device.begin():
            for user_id, nickname, row_id in ((player.id, "Bo", place), (rival.id, "Cy", uuid.uuid4())):
                other_device.execute(insert, {"id": row_id, "s": session_id, "u": user_id,
                                              "nickname": nickname, "code": rules.new_rejoin_code()})
            joins = [threading.Thread(target=join, args=("same player", player.id, None)),
                     threading.Thread(target=join, args=("same nickname", third.id, "cy"))]
            for thread in joins:
                thread.start()
            wait_until(lambda: _inserts_waiting(engine) == 2, "both joins wait for the uncommitted ones")
        for thread in joins:
            thread.join()
    same, nickname = results["same player"], results["same nickname"]
    assert isinstance(same, Conflict) and same.code == "already_joined"
    assert same.extra == {"participant_id": str(place), "nickname": "Bo"}
    assert isinstance(nickname, Conflict) and nickname.code == "nickname_taken"


def _inserts_waiting(engine) -> int:
    """Joins whose insert waits for another transaction's rows (read afresh: a transaction caches it)."""
    with engine.connect() as db:
        return db.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO quiz_session_participants%'")).scalar()
