"""`ops trace EVENT_ID` against the real stores: an answer's event relayed by the poll relay and applied by
the worker shows every hop (its row, its Kafka message on its key's partition, its room note and the
session's applied set); an event of no outbox exits 1."""
from __future__ import annotations

import re
import uuid

from sqlalchemy import text

from app import create_app
from app.quiz.board.keys import SessionKeys
from tests.integration.relay.support import drain as drain_relay
from tests.integration.relay.support import make_relay
from tests.integration.test_worker import _epoch
from tests.integration.worker_support import drain, event_rows, new_worker, play

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _trace(app, *args: str):
    return app.test_cli_runner().invoke(args=["ops", "trace", *args])


def test_ops_trace_prints_every_hop_of_a_relayed_and_applied_answer(api, engine, redis_client, topics):
    session = play(api, players=1, questions=1)
    sid = session["id"]
    with engine.begin() as conn:  # the answer came with a trace (the HTTP tests show how it gets there)
        conn.execute(text("UPDATE events SET traceparent = :t WHERE aggregate_id = :s "
                          "AND event_type = 'answer_scored'"), {"t": TRACEPARENT, "s": sid})
    answer = next(row for row in event_rows(engine, sid) if row.event_type == "answer_scored")
    config = topics.replace(relay_mode="poll")
    app = create_app(config)

    before = _trace(app, str(answer.id))
    assert before.exit_code == 0, before.output
    assert re.search(r"produced\s+not found", before.output), before.output  # not relayed yet
    assert re.search(r"applied\s+not found", before.output), before.output

    with engine.begin() as conn:  # what other tests left unpublished stays out of this test's topic
        conn.execute(text("UPDATE events SET published_at = now() WHERE published_at IS NULL "
                          "AND aggregate_id <> :s"), {"s": sid})
    relay = make_relay(config, engine)
    try:
        drain_relay(relay)
    finally:
        relay.close()
    worker = new_worker(topics, engine, redis_client)
    redis_client.hset(SessionKeys.of(sid).meta, mapping={"version": 0, "epoch_ms": _epoch(engine, sid),
                                                         "recent_seq": 0})
    try:
        drain(worker, len(event_rows(engine, sid)))
    finally:
        worker.close()

    result = _trace(app, str(answer.id))
    assert result.exit_code == 0, result.output
    assert f"event {answer.id}: answer_scored of quiz_session {sid}" in result.output
    assert f"trace      {TRACEPARENT}" in result.output
    produced = rf"produced\s+\S+\s+\+[\d.]+ ms\s+{re.escape(topics.kafka_topic)}\[\d+\]@\d+"
    assert re.search(produced, result.output), result.output
    assert re.search(r"applied\s+\S+\s+\+[\d.]+ ms\s+room note .*; in the session's applied set",
                     result.output), result.output
    assert "3 of 3 hops found" in result.output


def test_ops_trace_of_an_unknown_event_exits_1(app):
    result = _trace(app, str(uuid.uuid4()))
    assert result.exit_code == 1
    assert "not in the outbox" in result.output
    assert _trace(app, "not-a-uuid").exit_code == 2
