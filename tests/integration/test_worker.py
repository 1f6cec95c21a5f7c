"""The cache worker against real Kafka, Redis and PostgreSQL."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from types import SimpleNamespace

from confluent_kafka import TopicPartition

from app.core.events import envelope_from_row
from app.core.kafka import make_consumer
from app.quiz.board.keys import SessionKeys
from tests.helpers import WAIT_S, stack_env, wait_until
from tests.integration.poison_support import dead_letters
from tests.integration.worker_support import (
    drain,
    event_rows,
    new_worker,
    pg_ranking,
    pg_scores,
    play,
    publish,
    publish_raw,
    redis_ranking,
    redis_scores,
)


def test_events_applied_once_match_postgres_and_replay_changes_nothing(api, engine, redis_client, topics):
    session = play(api)
    sid = session["id"]
    count = publish(topics, event_rows(engine, sid))
    worker = new_worker(topics, engine, redis_client)
    drain(worker, count)
    worker.close()
    before = redis_scores(redis_client, sid)
    assert before == pg_scores(engine, sid)
    assert any(score > 0 for score in before.values())
    assert redis_ranking(redis_client, sid) == pg_ranking(engine, sid)
    version = int(redis_client.hget(SessionKeys.of(sid).meta, "version"))

    # Every event delivered a second time: published again, and the topic replayed from the start.
    publish(topics, event_rows(engine, sid))
    replay = new_worker(topics, engine, redis_client, group=f"replay-{uuid.uuid4().hex[:8]}")
    drain(replay, 2 * count)
    replay.close()
    assert redis_scores(redis_client, sid) == before
    assert int(redis_client.hget(SessionKeys.of(sid).meta, "version")) == version
    assert replay.metrics.duplicates._value.get() == 2 * count
    assert sum(c._value.get() for c in replay.metrics.applied._metrics.values()) == 0


def test_room_stream_gets_every_event_type(api, engine, redis_client, topics):
    session = play(api, players=2, questions=1)
    api.post(f"/api/v1/sessions/{session['id']}/end", token=session["host"].token, expect=200)
    rows = event_rows(engine, session["id"])
    worker = new_worker(topics, engine, redis_client)
    # The first event triggers a rebuild that already holds every event: apply from a board whose
    # state predates them instead, so each event reaches the stream through its own script.
    keys = SessionKeys.of(session["id"])
    worker.redis.hset(keys.meta, mapping={"version": 0, "epoch_ms": _epoch(engine, session["id"]),
                                          "recent_seq": 0})
    drain(worker, publish(topics, rows))
    worker.close()
    types = [fields[b"type"].decode() for _, fields in redis_client.xrange(keys.room)]
    # An answer to the open question only tells the room how many have answered: nothing of its points.
    assert types == [{"answer_scored": "answer_received"}.get(row.event_type, row.event_type) for row in rows]
    answer = next(f for _, f in redis_client.xrange(keys.room) if f[b"type"] == b"answer_received")
    # Its journey (app/core/tracing.py) names the event and when it was clicked: nothing of its points either.
    assert set(answer) == {b"type", b"question_id", b"participant_id", b"answered", b"player_count",
                           b"clicked_ms", b"event_id"}
    assert redis_client.ttl(keys.board) > 0  # session_ended set the retention of the session's keys


def _epoch(engine, session_id: str) -> int:
    from sqlalchemy import text

    from app.quiz.board.rebuild import session_epoch_ms
    with engine.connect() as connection:
        created = connection.execute(text("SELECT created_at FROM quiz_sessions WHERE id = :s"),
                                     {"s": session_id}).scalar_one()
    return session_epoch_ms(created)


def test_poison_message_is_dead_lettered_and_later_events_applied(api, engine, redis_client, topics):
    session = play(api, players=3, questions=2)
    sid = session["id"]
    rows = event_rows(engine, sid)
    # Same key, so same partition: the poison sits in the middle of the session's events.
    publish(topics, rows[:3])
    publish_raw(topics, sid.encode(), b"{not json",
                headers=[("event_id", b"x"), ("event_type", b"answer_scored")])
    unknown_version = SimpleNamespace(**(rows[3]._asdict() | {"version": 99}))
    publish_raw(topics, sid.encode(), envelope_from_row(unknown_version).to_json())
    publish(topics, rows[3:])
    worker = new_worker(topics, engine, redis_client)
    drain(worker, len(rows) + 2)
    worker.close()
    assert redis_scores(redis_client, sid) == pg_scores(engine, sid)

    dead = dead_letters(topics, topics.kafka_dlq_topic, 2)
    reasons = sorted(m.headers["dlq_reason"].decode() for m in dead)
    assert len(dead) == 2
    assert reasons[0].startswith("undecodable message")
    assert reasons[1].startswith("unknown event type or version")
    assert {m.key for m in dead} == {sid.encode()}
    assert b"{not json" in {m.value for m in dead}
    undecodable = next(m for m in dead if m.value == b"{not json")
    assert undecodable.headers["event_id"] == b"x"  # the original headers travel along


def _worker_process(config, extra_env: dict[str, str]) -> subprocess.Popen:
    env = stack_env(config, WORKER_BATCH_SIZE="1000", **extra_env)
    return subprocess.Popen([sys.executable, "-m", "cache_worker"], env=env, cwd=os.getcwd(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _committed(config, partitions: int) -> int:
    consumer = make_consumer(config)
    try:
        offsets = consumer.committed([TopicPartition(config.kafka_topic, p) for p in range(partitions)],
                                     timeout=WAIT_S)
        return sum(max(tp.offset, 0) for tp in offsets)
    finally:
        consumer.close()


def test_killed_between_apply_and_offset_store_then_restarted(api, engine, redis_client, topics):
    session = play(api, players=5, questions=3)
    sid = session["id"]
    count = publish(topics, event_rows(engine, sid))

    killed = _worker_process(topics, {"WORKER_TEST_EXIT_AFTER_APPLY": "1"})
    output = killed.communicate(timeout=120)[0].decode()
    assert killed.returncode == 137, output
    assert _committed(topics, topics.kafka_partitions) == 0  # applied, but no offset stored
    assert redis_scores(redis_client, sid)  # the effect reached Redis

    restarted = _worker_process(topics, {})
    try:
        wait_until(lambda: _committed(topics, topics.kafka_partitions) >= count,
                   "the restarted worker never committed the redelivered batch", every_s=0.25)
        restarted.send_signal(signal.SIGTERM)
        output = restarted.communicate(timeout=60)[0].decode()
    finally:
        if restarted.poll() is None:
            restarted.kill()
    assert restarted.returncode == 0, output
    assert _committed(topics, topics.kafka_partitions) == count
    assert redis_scores(redis_client, sid) == pg_scores(engine, sid)
    assert redis_ranking(redis_client, sid) == pg_ranking(engine, sid)


def test_ties_rank_who_reached_the_score_first(api, engine, redis_client, topics):
    # Everyone is on 0 points, reached at their join: ties rank by join order.
    host = api.host()
    created = api.live_session(host)
    sid = created["id"]
    players = [api.join(sid, api.guest()) for _ in range(4)]
    drain(worker := new_worker(topics, engine, redis_client), publish(topics, event_rows(engine, sid)))
    worker.close()
    assert redis_ranking(redis_client, sid) == [p.participant_id for p in players]
    assert redis_ranking(redis_client, sid) == pg_ranking(engine, sid)
