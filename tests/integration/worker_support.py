"""Helpers of the worker and leaderboard tests (no tests here).

The relay is another issue, so these tests publish the `events` rows written by the real HTTP
write path themselves, the way the relay does: key = session id, value = Envelope JSON, headers
event_id/event_type.
"""
from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from sqlalchemy import text

from app.core.config import Config
from app.core.events import envelope_from_row
from app.core.kafka import ensure_topics, make_producer
from app.quiz.board.keys import SessionKeys
from app.quiz.board.scores import split
from cache_worker.process import build_worker
from cache_worker.worker import CacheWorker
from tests.helpers import WAIT_S, Api, Player


def event_rows(engine, session_id: str | None = None) -> list[Any]:
    where = "WHERE aggregate_id = :s" if session_id else ""
    with engine.connect() as connection:
        return connection.execute(text(
            f"SELECT id, event_type, version, aggregate_type, aggregate_id, created_at, payload "
            f"FROM events {where} ORDER BY created_at, seq"), {"s": session_id}).all()


def publish(config: Config, rows, producer=None) -> int:
    """Produce the events rows to config.kafka_topic like the relay; returns how many."""
    producer = producer or make_producer(config)
    for row in rows:
        envelope = envelope_from_row(row)
        producer.produce(config.kafka_topic, key=envelope.key(), value=envelope.to_json(),
                         headers=envelope.headers())
        producer.poll(0)
    assert producer.flush(WAIT_S) == 0
    return len(rows)


def publish_raw(config: Config, key: bytes, value: bytes, headers=None) -> None:
    producer = make_producer(config)
    producer.produce(config.kafka_topic, key=key, value=value, headers=headers or [])
    assert producer.flush(WAIT_S) == 0


def fresh_topics(config: Config) -> Config:
    """Topics and a consumer group of one test."""
    run = uuid.uuid4().hex[:8]
    own = config.replace(kafka_topic=f"{config.kafka_topic}.{run}",
                         kafka_dlq_topic=f"{config.kafka_dlq_topic}.{run}",
                         kafka_consumer_group=f"{config.kafka_consumer_group}.{run}")
    ensure_topics(own)
    return own


def new_worker(config: Config, engine, redis_client, group: str | None = None, **kwargs) -> CacheWorker:
    """A worker built the way the process builds it, on the test's Redis and engine."""
    return build_worker(config, redis_client=redis_client, engine=engine, group_id=group, poll_timeout_s=0.2,
                        **kwargs)


def drain(worker: CacheWorker, messages: int) -> int:
    """Run batches until `messages` were handled; fails rather than hang once no message has come for
    TEST_WAIT_S (a bound on waiting, not on how fast the batches go)."""
    seen = 0
    deadline = time.monotonic() + WAIT_S
    while True:
        handled = worker.run_once()
        seen += handled
        if seen >= messages:
            return seen
        if handled:
            deadline = time.monotonic() + WAIT_S
        elif time.monotonic() > deadline:
            pytest.fail(f"the worker handled {seen} of {messages} messages, then none for {WAIT_S:.0f} s")


def pg_scores(engine, session_id: str) -> dict[str, int]:
    """The board's players (the removed ones are off it) and their scores, from PostgreSQL."""
    with engine.connect() as connection:
        return {str(pid): score for pid, score in connection.execute(text(
            "SELECT id, score FROM quiz_session_participants "
            "WHERE quiz_session_id = :s AND removed_at IS NULL"), {"s": session_id})}


def pg_ranking(engine, session_id: str) -> list[str]:
    """Participant ids in leaderboard order, computed from PostgreSQL."""
    with engine.connect() as connection:
        return [str(pid) for pid in connection.execute(text(
            "SELECT id FROM quiz_session_participants WHERE quiz_session_id = :s AND removed_at IS NULL "
            "ORDER BY score DESC, date_trunc('milliseconds', score_reached_at), id DESC"),
            {"s": session_id}).scalars()]


def redis_scores(redis_client, session_id: str) -> dict[str, int]:
    board = redis_client.zrange(SessionKeys.of(session_id).board, 0, -1, withscores=True)
    return {member.decode(): split(value)[0] for member, value in board}


def redis_ranking(redis_client, session_id: str) -> list[str]:
    return [m.decode() for m in redis_client.zrevrange(SessionKeys.of(session_id).board, 0, -1)]


def play(api: Api, *, players: int = 4, questions: int = 3, time_limit_s: int = 240) -> dict[str, Any]:
    """A session played through the HTTP write path: joins, answers (some right, some wrong)."""
    from tests.helpers import sample_questions

    host = api.host()
    quiz_questions = sample_questions(questions, time_limit_s=time_limit_s)
    session = api.live_session(host, quiz_questions)
    sid = session["id"]
    joined: list[Player] = [api.join(sid, api.guest()) for _ in range(players)]
    for position in range(questions):
        question = api.next_question(sid, host)
        correct = quiz_questions[position]["correct_choice"]
        for i, player in enumerate(joined):
            if (i + position) % 3 != 2:
                api.answer(sid, player, question["question_id"], correct if (i + position) % 2 == 0 else
                           (correct + 1) % 4)
        api.close_question(sid, host)
    return {"id": sid, "host": host, "players": joined, "questions": quiz_questions}
