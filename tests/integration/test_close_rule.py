"""A question's close in SQL is its rule in Python: for any players (score, streak, when the score was
reached) and any held answers, the statements the close runs (scoring.CLOSE_SQL) leave every player as
the pure rule says (scoring.after_close)."""
from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from app.quiz.domain.scoring import CLOSE_SQL, HeldAnswer, Standing, after_close, close_params

START = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
seconds = st.integers(0, 3600).map(lambda s: START + timedelta(seconds=s))
answers = st.none() | st.builds(HeldAnswer, points=st.sampled_from([0, 500, 1000, 1333, 2000, 2500]),
                                streak=st.integers(0, 7), answered_at=seconds)
players = st.lists(st.tuples(st.builds(Standing, score=st.integers(0, 20_000), streak=st.integers(0, 7),
                                       reached_at=seconds), answers), min_size=1, max_size=6)


def _close_in_postgres(connection, question_points: int, room: list[tuple[Standing, HeldAnswer | None]]):
    """The players and answers of `room` in a session of their own, closed by CLOSE_SQL: their standings."""
    host, quiz, question, session = (uuid.uuid4() for _ in range(4))
    connection.execute(text("INSERT INTO users (id, nickname, is_guest) VALUES (:id, 'host', true)"),
                       {"id": host})
    connection.execute(text("INSERT INTO quizzes (id, owner_id, title) VALUES (:id, :host, 'close')"),
                       {"id": quiz, "host": host})
    connection.execute(text("""
        INSERT INTO questions (id, quiz_id, position, text, choices, correct_choice, time_limit_s, points)
        VALUES (:id, :quiz, 0, 'Q?', CAST(:choices AS jsonb), 0, 20, :points)"""),
        {"id": question, "quiz": quiz, "choices": json.dumps(["a", "b"]), "points": question_points})
    connection.execute(text("""
        INSERT INTO quiz_sessions (id, quiz_id, host_id, join_code, status, current_question_id)
        VALUES (:id, :quiz, :host, '000000', 'ended', :question)"""),
        {"id": session, "quiz": quiz, "host": host, "question": question})
    ids = []
    for n, (standing, answer) in enumerate(room):
        user, participant = uuid.uuid4(), uuid.uuid4()
        ids.append(participant)
        connection.execute(text("INSERT INTO users (id, nickname, is_guest) VALUES (:id, :n, true)"),
                           {"id": user, "n": f"p{n}"})
        connection.execute(text("""
            INSERT INTO quiz_session_participants (id, quiz_session_id, user_id, nickname, score, streak,
                                                   score_reached_at)
            VALUES (:id, :session, :user, :n, :score, :streak, :reached)"""),
            {"id": participant, "session": session, "user": user, "n": f"p{n}", "score": standing.score,
             "streak": standing.streak, "reached": standing.reached_at})
        if answer is not None:
            connection.execute(text("""
                INSERT INTO participant_answers (id, quiz_session_participant_id, quiz_session_id,
                    question_id, choice, correct, points, answered_ms, streak, counted, created_at)
                VALUES (:id, :participant, :session, :question, 0, true, :points, 1000, :streak, false,
                        :at)"""),
                {"id": uuid.uuid4(), "participant": participant, "session": session, "question": question,
                 "points": answer.points, "streak": answer.streak, "at": answer.answered_at})
    for statement, params in zip(CLOSE_SQL, close_params(session, question, question_points)):
        connection.execute(text(statement), params)
    rows = connection.execute(text("""
        SELECT id, score, streak, score_reached_at FROM quiz_session_participants
        WHERE quiz_session_id = :s"""), {"s": session})
    found = {row.id: Standing(row.score, row.streak, row.score_reached_at) for row in rows}
    return [found[participant] for participant in ids]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(question_points=st.sampled_from([0, 1000, 2000]), room=players)
def test_the_close_in_postgresql_is_the_rule(engine, question_points, room):
    with engine.connect() as connection, connection.begin() as transaction:
        closed = _close_in_postgres(connection, question_points, room)
        transaction.rollback()  # nothing of it is anyone else's
    assert closed == [after_close(standing, answer, question_points) for standing, answer in room]


def test_the_rule_itself():
    """The cases the rule names, in Python."""
    before = Standing(1000, 3, START)
    later = START + timedelta(seconds=30)
    assert after_close(before, HeldAnswer(1400, 4, later), 1000) == Standing(2400, 4, later)
    assert after_close(before, HeldAnswer(0, 0, later), 1000) == Standing(1000, 0, START)  # wrong: no move
    assert after_close(before, None, 1000) == Standing(1000, 0, START)  # no answer to a question that counts
    assert after_close(before, None, 0) == before  # a poll, unanswered: nothing changes
    assert after_close(before, HeldAnswer(0, 3, later), 0) == before  # a poll's answer keeps the streak
