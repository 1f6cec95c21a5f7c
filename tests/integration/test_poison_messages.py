"""One message never stops a consumer: whatever a message makes the score ingest or the cache worker
raise, in decoding or in applying it, sends that message to the dead-letter topic with its reason, and
the messages after it are handled (app/core/poison.py). The consumers here are built as their processes
build them; test_consumer_fuzz.py runs the processes themselves."""
from __future__ import annotations

import base64
import json
import os
import uuid
from datetime import UTC, datetime

from confluent_kafka.admin import NewTopic

from app.core.events import Envelope, envelope_from_row
from app.core.kafka import make_admin
from app.leaderboards.events import LEADERBOARD
from app.quiz.events import QUIZ_SESSION
from score_ingest.ingest import ScoreIngest
from score_ingest.process import build_ingest
from tests.integration.leaderboard_support import board, owner
from tests.integration.poison_support import (
    NEAR_LIMIT,
    VERY_DEEP,
    Raw,
    assert_each_dead_lettered,
    dead_letters,
    near_limit,
    nested,
    produce_all,
)
from tests.integration.test_score_ingest import entries
from tests.integration.worker_support import (
    drain,
    event_rows,
    new_worker,
    pg_scores,
    play,
    publish,
    redis_scores,
)


def _score(board_id: str, player: str, points: int) -> bytes:
    return json.dumps({"leaderboard_id": board_id, "player_id": player, "score": points}).encode()


def _ingest_all(config, engine, count: int) -> ScoreIngest:
    """A score ingest, built as its process builds it, run until it has handled `count` messages."""
    ingest = build_ingest(config, engine=engine, poll_timeout_s=0.2)
    try:
        drain(ingest, count)
    finally:
        ingest.close()
    return ingest


def test_a_score_nested_100000_deep_is_dead_lettered_and_the_scores_after_it_land(api, topics, engine):
    board_id = board(api, owner(api), update_mode="increment")["id"]
    key = board_id.encode()
    poison = Raw("very deep", nested(VERY_DEEP), key=key)
    sent = produce_all(topics, topics.score_topic, [
        Raw("valid", _score(board_id, "ann", 10), key=key), poison,
        Raw("valid", _score(board_id, "ann", 5), key=key)])
    ingest = _ingest_all(topics, engine, sent)
    assert entries(engine, board_id) == {"ann": 15}
    [reason] = assert_each_dead_lettered(dead_letters(topics, topics.score_dlq_topic, 1), [poison])
    assert reason.startswith("invalid_json: too_deep")
    assert ingest.metrics.dead_lettered.labels(reason="invalid_json")._value.get() == 1


def test_keys_and_headers_that_are_not_utf8_neither_stop_a_score_nor_its_dead_letter(api, topics, engine):
    board_id = board(api, owner(api), update_mode="increment")["id"]
    odd_key, odd_headers = b"\xff\xfe\x00", [(b"\xff\xfename", b"\xff"), (b"trace", None)]
    poison = Raw("header name not UTF-8", b"{not json", key=odd_key, headers=odd_headers)
    sent = produce_all(topics, topics.score_topic, [
        Raw("valid", _score(board_id, "ann", 3), key=odd_key, headers=odd_headers), poison,
        Raw("valid", _score(board_id, "bob", 4), key=odd_key, headers=odd_headers)])
    _ingest_all(topics, engine, sent)
    assert entries(engine, board_id) == {"ann": 3, "bob": 4}  # the key and headers of a score are not read
    [letter] = dead_letters(topics, topics.score_dlq_topic, 1)
    assert (letter.key, letter.value) == (odd_key, poison.value)
    assert letter.headers["dlq_reason"].decode().startswith("invalid_json: ")
    assert "headers left out: a header name is not UTF-8" in letter.headers["dlq_reason"].decode()


def test_a_dead_letter_too_large_for_its_topic_is_cut_to_fit(api, topics, engine):
    """Refused by the producer (over its 1,000,000-byte limit once the reason is added) or by the broker
    (over the dead-letter topic's own limit): either way the copy is cut, and the partition goes on."""
    small = topics.replace(score_dlq_topic=f"{topics.score_dlq_topic}.small")
    admin = make_admin(small)
    admin.create_topics([NewTopic(small.score_dlq_topic, num_partitions=1, replication_factor=-1,
                                  config={"max.message.bytes": "50000"})])[small.score_dlq_topic].result(30)
    board_id = board(api, owner(api), update_mode="increment")["id"]
    key = board_id.encode()
    poisons = [Raw("near the size limit", near_limit({"leaderboard_id": "?"}, "player_id"), key=key),
               # Random text: compression must not bring it under the topic's limit.
               Raw("over the topic's limit", json.dumps({"leaderboard_id": _noise(100_000)}).encode(),
                   key=key)]
    assert len(poisons[0].value) == NEAR_LIMIT
    sent = produce_all(small, small.score_topic,
                       [*poisons, Raw("valid", _score(board_id, "ann", 1), key=key)])
    _ingest_all(small, engine, sent)
    assert entries(engine, board_id) == {"ann": 1}
    reasons = assert_each_dead_lettered(dead_letters(small, small.score_dlq_topic, 2), poisons)
    assert all(r.startswith("invalid_message: ") and "too large for the dead-letter topic" in r
               for r in reasons)


def _noise(length: int) -> str:
    return base64.b64encode(os.urandom(length))[:length].decode()


def _envelope(like: Envelope, **changes) -> bytes:
    data = json.loads(like.to_json())
    data.update(event_id=str(uuid.uuid4()), **changes)
    return json.dumps(data).encode()


def _run_worker_around(poisons_like, api, engine, redis_client, topics) -> list[str]:
    """A played session's events with `poisons_like(its first event)` in the middle of its partition,
    through a worker; the session's board in Redis must end as PostgreSQL's. Returns the dead letters'
    reasons."""
    session = play(api, players=3, questions=2)
    sid = session["id"]
    rows = event_rows(engine, sid)
    poisons = poisons_like(envelope_from_row(rows[0]))
    publish(topics, rows[:3])
    produce_all(topics, topics.kafka_topic, poisons)
    publish(topics, rows[3:])
    worker = new_worker(topics, engine, redis_client)
    try:
        drain(worker, len(rows) + len(poisons))
    finally:
        worker.close()
    assert redis_scores(redis_client, sid) == pg_scores(engine, sid)
    assert any(redis_scores(redis_client, sid).values())
    return assert_each_dead_lettered(dead_letters(topics, topics.kafka_dlq_topic, len(poisons)), poisons)


ENTRY = {"period": "all", "player_id": "ann", "score": 1, "tie_seq": 1, "version": 1, "display_name": None,
         "reached_at": "2026-01-01T00:00:00+00:00"}


def test_events_that_cannot_be_decoded_are_dead_lettered_and_the_events_after_them_applied(
        api, engine, redis_client, topics):
    def poisons(joined: Envelope) -> list[Raw]:
        key = joined.key()
        return [
            # Decoding raised what nobody caught: RecursionError, OverflowError.
            Raw("very deep", nested(VERY_DEEP), key=key),
            Raw("version 1e400", _envelope(joined).replace(b'"version": 1', b'"version": 1e400'), key=key),
            # Valid JSON of the wrong shape: for its event type, or for its aggregate.
            Raw("payload of another type", _envelope(joined, event_type="answer_scored"), key=key),
            Raw("event of another aggregate", _envelope(joined, event_type="entry_changed", payload=ENTRY),
                key=key),
        ]

    reasons = _run_worker_around(poisons, api, engine, redis_client, topics)
    assert sorted(reason.split(":")[0] for reason in reasons) == [
        "invalid answer_scored v1 payload", "undecodable message", "undecodable message",
        "wrong aggregate"], reasons
    assert any("too_deep" in r for r in reasons)
    assert QUIZ_SESSION in next(r for r in reasons if r.startswith("wrong aggregate"))


def test_events_whose_apply_raises_are_dead_lettered_and_the_events_around_them_applied(
        api, engine, redis_client, topics):
    """Decoded, but applying them raised: a date past datetime's range (the session's keys expire 8 days
    after it ended), text PostgreSQL cannot hold (the board Redis lacks is looked up to be rebuilt)."""
    far_future = datetime(9999, 12, 31, 23, 0, tzinfo=UTC).isoformat()

    def poisons(joined: Envelope) -> list[Raw]:
        key = joined.key()
        return [
            Raw("ended in year 9999", _envelope(joined, event_type="session_ended",
                                                payload={"ended_at": far_future}),
                key=key),
            Raw("board id with NUL", _envelope(joined, event_type="entry_changed", aggregate_type=LEADERBOARD,
                                               aggregate_id="b\x00x", payload=ENTRY), key=key),
        ]

    reasons = _run_worker_around(poisons, api, engine, redis_client, topics)
    assert [reason.split(":")[0] for reason in reasons] == ["unexpected", "unexpected"], reasons
    assert any("OverflowError" in r for r in reasons) and any("DataError" in r for r in reasons)
