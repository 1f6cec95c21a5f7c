"""An event's trace context across the outbox, with tracing off (no OTLP endpoint: the no-op API): the
request's `traceparent` header is written with its events (`events.traceparent`), the relay sends it as the
Kafka header of both modes, score messages pass theirs on to their events, and the worker ends each room
note with the event's journey and its trace. A missing or malformed `traceparent` fails nothing: the
request answers as it would, the event is applied without a trace. The per-hop histograms count with
tracing off. The relay's part: tests/integration/relay/test_relay_trace.py."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from app.core.events import envelope_from_row
from app.core.kafka import make_producer
from app.core.tracing import enabled
from app.quiz.board.keys import SessionKeys
from score_ingest.process import build_ingest
from tests.helpers import WAIT_S, sample_questions
from tests.integration.leaderboard_support import board, owner
from tests.integration.test_worker import _epoch
from tests.integration.worker_support import drain as drain_consumer
from tests.integration.worker_support import event_rows, new_worker, play, publish_raw

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
MALFORMED = ["00-xyz", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
             "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "x" * 5000]


def _traceparents(engine, where: str, params: dict) -> list[str | None]:
    with engine.connect() as conn:
        return list(conn.execute(text(
            f"SELECT traceparent FROM events WHERE {where} ORDER BY created_at, seq"), params).scalars())


def _answer(api, session: dict, player, question_id: str, headers: dict[str, str]):
    return api.client.post(f"/api/v1/sessions/{session['id']}/answers",
                           json={"question_id": question_id, "choice": 0},
                           headers={"Authorization": f"Bearer {player.token}", **headers})


def test_an_answer_and_a_score_carry_the_request_traceparent_and_a_malformed_one_fails_nothing(api, engine):
    assert not enabled()  # the tests' processes export nothing: the trace passes on by the no-op API

    host = api.host()
    session = api.live_session(host, sample_questions(1, time_limit_s=240))
    players = [api.join(session["id"], api.guest()) for _ in range(2 + len(MALFORMED))]
    question = api.next_question(session["id"], host)
    traced = _answer(api, session, players[0], question["question_id"], {"traceparent": TRACEPARENT})
    assert traced.status_code == 201
    assert _answer(api, session, players[1], question["question_id"], {}).status_code == 201
    for player, bad in zip(players[2:], MALFORMED):
        assert _answer(api, session, player, question["question_id"], {"traceparent": bad}).status_code == 201
    answered = _traceparents(engine, "aggregate_id = :s AND event_type = 'answer_scored'",
                             {"s": session["id"]})
    assert answered == [TRACEPARENT] + [None] * (1 + len(MALFORMED))

    who = owner(api)
    board_id = board(api, who)["id"]
    for player, traceparent in (("ann", TRACEPARENT), ("bob", MALFORMED[0])):
        response = api.client.post("/api/v1/scores",
                                   json={"leaderboard_id": board_id, "player_id": player, "score": 5},
                                   headers={"Authorization": f"Bearer {who.token}",
                                            "traceparent": traceparent})
        assert response.status_code == 201
    assert _traceparents(engine, "aggregate_id = :b AND event_type = 'entry_changed'", {"b": board_id}) == [
        TRACEPARENT, None]


def test_score_messages_pass_their_traceparent_header_on_to_their_events(api, topics, engine):


    who = owner(api)
    board_id = board(api, who)["id"]
    producer = make_producer(topics)
    sent = [("ann", [("traceparent", TRACEPARENT.encode())]), ("bob", []),
            ("cat", [("traceparent", b"\xff\xfe")]), ("dan", [("traceparent", MALFORMED[1].encode())])]
    for player, headers in sent:
        value = json.dumps({"leaderboard_id": board_id, "player_id": player, "score": 3}).encode()
        producer.produce(topics.score_topic, key=board_id.encode(), headers=headers, value=value)
    assert producer.flush(WAIT_S) == 0
    ingest = build_ingest(topics, engine=engine, poll_timeout_s=0.2)
    try:
        drain_consumer(ingest, len(sent))
    finally:
        ingest.close()
    with engine.connect() as conn:
        by_player = dict(conn.execute(text(
            "SELECT payload->>'player_id', traceparent FROM events WHERE aggregate_id = :b "
            "AND event_type = 'entry_changed'"), {"b": board_id}).all())
    assert by_player == {"ann": TRACEPARENT, "bob": None, "cat": None, "dan": None}


@pytest.mark.parametrize("header", [TRACEPARENT.encode(), None, b"garbage", b"\xff"])
def test_the_worker_ends_room_notes_with_the_journey_and_trace_and_times_the_hop(api, engine, redis_client,
                                                                                  topics, header):
    session = play(api, players=1, questions=1)
    rows = event_rows(engine, session["id"])
    worker = new_worker(topics, engine, redis_client)
    # A board whose state predates the events, so each reaches the room through its own script (no rebuild).
    redis_client.hset(SessionKeys.of(session["id"]).meta, mapping={
        "version": 0, "epoch_ms": _epoch(engine, session["id"]), "recent_seq": 0})
    try:
        for row in rows:
            envelope = envelope_from_row(row)
            headers = envelope.headers() + ([("traceparent", header)] if header is not None else [])
            publish_raw(topics, envelope.key(), envelope.to_json(), headers)
        drain_consumer(worker, len(rows))
    finally:
        worker.close()
    notes = [fields for _, fields in redis_client.xrange(SessionKeys.of(session["id"]).room)
             if fields[b"type"] != b"board_rebuilt"]
    assert notes, "the worker appended no room note"
    for fields in notes:
        assert fields[b"event_id"].decode() in {str(row.id) for row in rows}
        assert int(fields[b"clicked_ms"]) > 0
        assert fields.get(b"traceparent") == (header if header == TRACEPARENT.encode() else None)
    assert worker.metrics.registry.get_sample_value("worker_produced_to_applied_seconds_count",
                                                    {"aggregate": "quiz_session"}) == len(rows)
