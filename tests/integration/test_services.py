"""Use cases called directly, with a database session of the test's own (the `db` fixture): the rules of
the write path without HTTP."""
from __future__ import annotations

import uuid

import pytest

from app.accounts import users
from app.core.errors import Conflict, Forbidden, Gone
from app.quiz.domain import sessions as rules
from app.quiz.service import quizzes, sessions
from tests.helpers import sample_questions


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
