"""A finished session with 10,000 players x 100 questions = 1,000,000 answers, and its 1,000,000
answer_scored outbox events, written with a few INSERT ... SELECT generate_series statements.

The relay benchmark drains those events; the rebuild benchmark rebuilds this session's board (and makes
its own when the relay benchmark did not). Each call's rows have ids of their own (derived from the
session's id), so a second call never meets the rows of a first one, finished or not.
"""
from __future__ import annotations

import time
import uuid

from sqlalchemy import text

PLAYERS = 10_000
QUESTIONS = 100


def create(engine, players: int = PLAYERS, questions: int = QUESTIONS) -> tuple[uuid.UUID, dict]:
    session = uuid.uuid4()
    timings = {}
    params = {"s": session, "tag": session.hex, "players": players, "questions": questions}
    steps = [
        ("users", "INSERT INTO users (id, nickname, is_guest) "
                  "SELECT md5(:tag || 'rb-u' || g)::uuid, 'p' || g, true "
                  "FROM generate_series(0, :players - 1) g"),
        ("host", "INSERT INTO users (id, nickname, is_guest) "
                 "VALUES (md5(:tag || 'rb-host')::uuid, 'host', true)"),
        ("quiz", "INSERT INTO quizzes (id, owner_id, title) "
                 "VALUES (md5(:tag || 'rb-quiz')::uuid, md5(:tag || 'rb-host')::uuid, 'rb')"),
        ("questions", "INSERT INTO questions (id, quiz_id, position, text, choices, correct_choice, "
                      "time_limit_s, points) "
                      "SELECT md5(:tag || 'rb-q' || g)::uuid, md5(:tag || 'rb-quiz')::uuid, g, 'Q?', "
                      "'[\"a\",\"b\",\"c\",\"d\"]', g % 4, 20, 1000 "
                      "FROM generate_series(0, :questions - 1) g"),
        ("session", "INSERT INTO quiz_sessions (id, quiz_id, host_id, join_code, status, "
                    "current_question_id, question_opened_at, question_deadline, ended_at) "
                    "VALUES (:s, md5(:tag || 'rb-quiz')::uuid, md5(:tag || 'rb-host')::uuid, '500000', "
                    "'ended', md5(:tag || 'rb-q' || (:questions - 1))::uuid, now(), now(), now())"),
        ("participants", "INSERT INTO quiz_session_participants (id, quiz_session_id, user_id, nickname) "
                         "SELECT md5(:tag || 'rb-p' || g)::uuid, :s, md5(:tag || 'rb-u' || g)::uuid, "
                         "'p' || g FROM generate_series(0, :players - 1) g"),
        ("answers", """
            INSERT INTO participant_answers (id, quiz_session_participant_id, quiz_session_id, question_id,
                                             choice, correct, points, answered_ms, counted, created_at)
            SELECT gen_random_uuid(), md5(:tag || 'rb-p' || g)::uuid, :s, md5(:tag || 'rb-q' || q)::uuid,
                   (g + q) % 4, (g + q) % 4 = q % 4,
                   CASE WHEN (g + q) % 4 = q % 4 THEN 500 + (g * 7 + q * 13) % 501 ELSE 0 END,
                   (g * 31 + q * 17) % 20000, true, now() - make_interval(secs => (100 - q) * 30)
            FROM generate_series(0, :questions - 1) q, generate_series(0, :players - 1) g"""),
        ("scores", """
            UPDATE quiz_session_participants p SET score = t.total, score_reached_at = t.reached
            FROM (SELECT quiz_session_participant_id AS id, sum(points) AS total, max(created_at) AS reached
                  FROM participant_answers WHERE quiz_session_id = :s GROUP BY 1) t
            WHERE p.id = t.id"""),
        ("events", """
            INSERT INTO events (id, aggregate_type, aggregate_id, event_type, version, payload, created_at)
            SELECT gen_random_uuid(), 'quiz_session', :s, 'answer_scored', 1,
                   jsonb_build_object('answer_id', a.id, 'participant_id', a.quiz_session_participant_id,
                       'user_id', md5(:tag || 'rb-u' || a.answered_ms)::uuid, 'nickname', 'p42',
                       'question_id', a.question_id, 'choice', a.choice, 'correct', a.correct,
                       'points', a.points, 'streak', 1, 'answered_ms', a.answered_ms,
                       'answered_at', a.created_at, 'total', 1500),
                   a.created_at
            FROM participant_answers a WHERE a.quiz_session_id = :s"""),
    ]
    for name, sql in steps:
        started = time.monotonic()
        with engine.begin() as db:
            db.execute(text(sql), params)
        timings[name] = round(time.monotonic() - started, 1)
    with engine.begin() as db:
        db.execute(text("ANALYZE participant_answers; ANALYZE events; ANALYZE quiz_session_participants"))
    return session, timings
