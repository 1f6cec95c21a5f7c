"""The audit: what the clients were told (the ledger) and what Kafka holds, held to PostgreSQL.

- Lost: an acknowledged answer (201 or 200) whose answer_id is not in `participant_answers`, or is
  there for another player, question or choice than the one acknowledged.
- Doubled: two answers of one player to one question, two `answer_scored` events of one answer, or
  a participant whose score is not the sum of their counted answers' points (every session has
  ended, so every answer must be counted, once).
- Broken promises: an answer refused with a definitive 4xx (`question_closed`, ...) that is recorded
  anyway. (A 200 after a 503 proves nothing: the server may have retried its own commit and found
  the answer recorded, which it reports as a 200 too.)
- Kafka: every event id of the `events` table is on the run's topic (read whole); copies of one
  event are allowed (the relay publishes at least once) and are counted for information. The
  dead-letter topic must be empty: every event the chaos produced is well formed, so a dead letter
  is an event the worker gave up on.
- `flask ops verify`, the operators' own check, run with the run's environment, must exit 0.
"""
from __future__ import annotations

import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import text

from app.core.config import Config
from tests.chaos.ledger import ACKED, CONFLICT, GAVE_UP, REFUSED, Ledger
from tests.helpers import stack_env
from tests.integration.relay.support import ROOT, read_topic

KAFKA_READ_S = 600.0

_ANSWERS = text("""
    SELECT a.id::text, a.quiz_session_id::text, p.user_id::text, a.question_id::text, a.choice
    FROM participant_answers a JOIN quiz_session_participants p ON p.id = a.quiz_session_participant_id""")

_DOUBLE_ROWS = text("""
    SELECT count(*) FROM (SELECT 1 FROM participant_answers
                          GROUP BY quiz_session_participant_id, question_id HAVING count(*) > 1) d""")

_DOUBLE_EVENTS = text("""
    SELECT count(*) FROM (SELECT 1 FROM events WHERE event_type = 'answer_scored'
                          GROUP BY payload->>'answer_id' HAVING count(*) > 1) d""")

_ANSWERS_WITHOUT_EVENT = text("""
    SELECT count(*) FROM participant_answers a
    LEFT JOIN (SELECT DISTINCT payload->>'answer_id' AS answer_id FROM events
               WHERE event_type = 'answer_scored') e
           ON e.answer_id = a.id::text
    WHERE e.answer_id IS NULL""")

# Every session has ended, so every question closed and counted its answers.
_UNCOUNTED = text("SELECT count(*) FROM participant_answers WHERE NOT counted")

_SCORES_OFF = text("""
    SELECT count(*) FROM quiz_session_participants p
    LEFT JOIN (SELECT quiz_session_participant_id AS pid, sum(points) FILTER (WHERE counted) AS points
               FROM participant_answers GROUP BY 1) a ON a.pid = p.id
    WHERE p.score <> coalesce(a.points, 0)""")


@dataclass
class Findings:
    acknowledged: int = 0
    replayed: int = 0                # acknowledged by a 200: the original receipt of a retry
    lost: list[str] = field(default_factory=list)
    double_rows: int = 0
    double_events: int = 0
    scores_off: int = 0
    uncounted: int = 0
    answers_without_event: int = 0
    refused: Counter = field(default_factory=Counter)
    refused_but_recorded: int = 0
    conflicts: int = 0
    gave_up: int = 0
    unknown_answers: int = 0         # answers that got a 504 outcome_unknown at least once
    unknown_recorded: int = 0
    events: int = 0
    missing_from_kafka: int = 0
    not_in_table: int = 0
    published_twice: int = 0
    dead_letters: int = 0
    verify_exit: int | None = None
    verify_summary: str = ""

    @property
    def doubled(self) -> int:
        return self.double_rows + self.double_events + self.scores_off


def check_answers(engine, ledger: Ledger, findings: Findings) -> None:
    with engine.connect() as db:
        rows = db.execute(_ANSWERS).all()
        findings.double_rows = db.execute(_DOUBLE_ROWS).scalar()
        findings.double_events = db.execute(_DOUBLE_EVENTS).scalar()
        findings.answers_without_event = db.execute(_ANSWERS_WITHOUT_EVENT).scalar()
        findings.scores_off = db.execute(_SCORES_OFF).scalar()
        findings.uncounted = db.execute(_UNCOUNTED).scalar()
    by_id = {r[0]: r[1:] for r in rows}
    by_fact = {r[1:4]: r[0] for r in rows}  # (session, user, question) -> answer id
    for record in ledger.answers:
        fact = (record.session_id, record.user_id, record.question_id)
        if record.outcome == ACKED:
            findings.acknowledged += 1
            findings.replayed += record.history[-1] == "200"
            if by_id.get(record.answer_id) != (*fact, record.choice):
                findings.lost.append(record.answer_id)
        elif record.outcome == REFUSED:
            findings.refused[record.code] += 1
            findings.refused_but_recorded += fact in by_fact
        elif record.outcome == CONFLICT:
            findings.conflicts += 1
        elif record.outcome == GAVE_UP:
            findings.gave_up += 1
        if record.saw_unknown:
            findings.unknown_answers += 1
            findings.unknown_recorded += fact in by_fact


def check_kafka(config: Config, engine, findings: Findings) -> None:
    with engine.connect() as db:
        table = {str(i) for i in db.execute(text("SELECT id FROM events")).scalars()}
    copies = Counter(m.event_id for m in read_topic(config.kafka_bootstrap_servers, config.kafka_topic,
                                                      timeout_s=KAFKA_READ_S))
    findings.events = len(table)
    findings.missing_from_kafka = len(table - copies.keys())
    findings.not_in_table = len(copies.keys() - table)
    findings.published_twice = sum(1 for n in copies.values() if n > 1)
    findings.dead_letters = len(read_topic(config.kafka_bootstrap_servers, config.kafka_dlq_topic,
                                           timeout_s=KAFKA_READ_S))


def run_verify(config: Config, findings: Findings) -> None:
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "ops", "verify"], cwd=ROOT,
                          env=stack_env(config), capture_output=True, text=True, timeout=600, check=False)
    findings.verify_exit = done.returncode
    lines = done.stdout.strip().splitlines()
    findings.verify_summary = lines[-1] if lines else done.stderr.strip()[-300:]
    if done.returncode != 0:
        print(done.stdout + done.stderr, file=sys.stderr)


def audit(config: Config, engine, ledger: Ledger) -> Findings:
    findings = Findings()
    check_answers(engine, ledger, findings)
    check_kafka(config, engine, findings)
    run_verify(config, findings)
    return findings
