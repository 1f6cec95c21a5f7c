"""pgbench running the answer path's SQL (app/quiz/service/answers.py), the database's ceiling.

The same two statements in one transaction: the SELECT ... FOR KEY SHARE of the session with its open
question and the participant, then the CTE that inserts the answer and writes the outbox event (the
score moves when the question closes). Participants and questions are random: 10,000 players across 50
open sessions and 1,000 questions, with ids derived from integers by md5() so pgbench can name them.
"""
from __future__ import annotations

import json
import re
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from app.quiz.events import SESSION_EVENTS, AnswerScored

PLAYERS = 10_000
SESSIONS = 50
QUESTIONS = 1_000

SETUP = [
    "INSERT INTO users (id, nickname, is_guest) SELECT md5('pgb-u' || g)::uuid, 'pgb', true "
    "FROM generate_series(0, :players - 1) g",
    "INSERT INTO users (id, nickname, is_guest) VALUES (md5('pgb-host')::uuid, 'pgb-host', true)",
    "INSERT INTO quizzes (id, owner_id, title) "
    "VALUES (md5('pgb-quiz')::uuid, md5('pgb-host')::uuid, 'pgbench')",
    "INSERT INTO questions (id, quiz_id, position, text, choices, correct_choice, time_limit_s, points) "
    "SELECT md5('pgb-q' || g)::uuid, md5('pgb-quiz')::uuid, g, 'Q?', '[\"a\",\"b\",\"c\",\"d\"]', 0, 240, "
    "1000 FROM generate_series(0, :questions - 1) g",
    "INSERT INTO quiz_sessions (id, quiz_id, host_id, join_code, status, current_question_id, "
    "question_opened_at, question_deadline) "
    "SELECT md5('pgb-s' || k)::uuid, md5('pgb-quiz')::uuid, md5('pgb-host')::uuid, "
    "'9' || lpad(k::text, 5, '0'), 'question_open', md5('pgb-q0')::uuid, now(), now() + interval '1 day' "
    "FROM generate_series(0, :sessions - 1) k",
    "INSERT INTO quiz_session_participants (id, quiz_session_id, user_id, nickname) "
    "SELECT md5('pgb-p' || g)::uuid, md5('pgb-s' || (g % :sessions))::uuid, md5('pgb-u' || g)::uuid, "
    "'pgb' || g FROM generate_series(0, :players - 1) g",
]


def _payload() -> str:
    """A payload of the same shape and size as the app's answer_scored payload."""
    now = datetime.now(UTC)
    participant = uuid.uuid4()
    body = SESSION_EVENTS.payload_for("answer_scored", AnswerScored(
        answer_id=uuid.uuid4(), participant_id=participant, user_id=uuid.uuid4(), nickname="p42",
        question_id=uuid.uuid4(), choice=1, correct=True, points=750, streak=2, answered_ms=1234,
        answered_at=now, total=1500))
    return json.dumps(body).replace("'", "''")


def script() -> str:
    s = f"md5('pgb-s' || (:g % {SESSIONS}))::uuid"
    return f"""\\set g random(0, {PLAYERS - 1})
\\set q random(0, {QUESTIONS - 1})
BEGIN;
SELECT s.status, s.current_question_id, s.question_opened_at, s.question_deadline,
       q.correct_choice, q.points, q.time_limit_s, jsonb_array_length(q.choices) AS choice_count,
       p.id AS participant_id, p.nickname, p.streak, p.score, clock_timestamp() AS now
FROM quiz_sessions s
LEFT JOIN questions q ON q.id = s.current_question_id
LEFT JOIN quiz_session_participants p ON p.quiz_session_id = s.id AND p.user_id = md5('pgb-u' || :g)::uuid
WHERE s.id = {s}
FOR KEY SHARE OF s;
WITH answer AS (
    INSERT INTO participant_answers (id, quiz_session_participant_id, quiz_session_id, question_id,
                                     choice, correct, points, answered_ms, streak, counted, created_at)
    VALUES (gen_random_uuid(), md5('pgb-p' || :g)::uuid, {s}, md5('pgb-q' || :q)::uuid, 1, true, 750, 1234, 2,
            false, clock_timestamp())
    ON CONFLICT (quiz_session_participant_id, question_id) DO NOTHING
    RETURNING id
), event AS (
    INSERT INTO events (id, aggregate_type, aggregate_id, event_type, version, payload)
    SELECT gen_random_uuid(), 'quiz_session', {s}, 'answer_scored', 1, CAST('{_payload()}' AS jsonb)
    FROM answer
    RETURNING id
)
SELECT (SELECT id FROM answer) AS answer_id, (SELECT id FROM event) AS event_id;
COMMIT;
"""


def prepare(engine) -> None:
    params = {"players": PLAYERS, "sessions": SESSIONS, "questions": QUESTIONS}
    with engine.begin() as db:
        for statement in SETUP:
            db.execute(text(statement), params)


def run(database_url: str, workdir: Path, clients: int, duration_s: int) -> dict:
    path = workdir / "answer_path.pgbench"
    path.write_text(script())
    url = make_url(database_url)
    env = {"PGPASSWORD": url.password or "", "PATH": "/usr/bin:/bin"}
    command = ["pgbench", "-h", url.host, "-p", str(url.port), "-U", url.username, "-n", "-M", "prepared",
               "-c", str(clients), "-j", "2", "-T", str(duration_s), "-f", str(path), url.database]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=duration_s + 60)
    if out.returncode != 0:
        raise RuntimeError(f"pgbench failed: {out.stderr[-2000:]}")
    tps = float(re.search(r"tps = ([\d.]+)", out.stdout).group(1))
    latency = re.search(r"latency average = ([\d.]+) ms", out.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", out.stdout)
    return {"tps": tps, "latency_avg_ms": float(latency.group(1)) if latency else None,
            "failed": int(failed.group(1)) if failed else 0, "clients": clients, "duration_s": duration_s,
            "command": " ".join(command[:-1] + [url.database]), "script": str(path)}
