"""The score ingest: seed 001's Kafka messages committed through the service's write path, poison
messages dead-lettered with the partition going on, redeliveries and kill -9 counted once, the dead
letters redriven, and the producer tool."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from confluent_kafka import TopicPartition
from sqlalchemy import text

from app import create_app
from app.core.kafka import make_consumer, make_producer
from score_ingest.process import build_ingest
from tests.helpers import WAIT_S, stack_env, wait_until
from tests.integration.leaderboard_support import board, owner
from tests.integration.relay.support import read_topic
from tests.integration.worker_support import drain


def produce_scores(config, messages: list[tuple[str, bytes | dict]]) -> int:
    """(board key, message) pairs to the score topic, as game servers send them."""
    producer = make_producer(config)
    for key, value in messages:
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        producer.produce(config.score_topic, key=key.encode(), value=raw)
        producer.poll(0)
    assert producer.flush(WAIT_S) == 0
    return len(messages)


def entries(engine, board_id: str) -> dict[str, int]:
    with engine.connect() as connection:
        return dict(connection.execute(text(
            "SELECT player_id, score FROM leaderboard_entries WHERE leaderboard_id = :b"),
            {"b": board_id}).all())


def committed(config) -> int:
    consumer = make_consumer(config, group_id=config.score_consumer_group)
    try:
        offsets = consumer.committed([TopicPartition(config.score_topic, p)
                                      for p in range(config.kafka_partitions)],
                                     timeout=WAIT_S)
        return sum(max(tp.offset, 0) for tp in offsets)
    finally:
        consumer.close()


@pytest.fixture()
def ingest(topics, engine):
    ingest = build_ingest(topics, engine=engine, poll_timeout_s=0.2)
    yield ingest
    ingest.close()


def test_a_batch_commits_what_it_can_and_dead_letters_the_rest(api, topics, engine, ingest):
    who = owner(api)
    board_id = board(api, who, update_mode="increment")["id"]
    sent = produce_scores(topics, [
        (board_id, {"leaderboard_id": board_id, "player_id": "ann", "score": 10, "game_id": "match1"}),
        (board_id, b"{not json"),
        (board_id, {"leaderboard_id": "no-such-board", "player_id": "ann", "score": 1}),
        (board_id, {"leaderboard_id": board_id, "player_id": "ann", "score": 2 ** 60}),
        (board_id, {"leaderboard_id": board_id, "player_id": "ann", "score": 5, "display_name": "Ann"}),
    ])
    drain(ingest, sent)
    assert entries(engine, board_id) == {"ann": 15}
    with engine.connect() as connection:
        metadata = connection.execute(text("SELECT metadata FROM leaderboard_entries "
                                           "WHERE leaderboard_id = :b"), {"b": board_id}).scalar()
    assert metadata == {"game_id": "match1"}  # seed 001's game id is kept with the entry
    dead = read_topic(topics.kafka_bootstrap_servers, topics.score_dlq_topic)
    reasons = sorted(m.headers["dlq_reason"].decode().split(":")[0] for m in dead)
    assert reasons == ["invalid_json", "invalid_message", "not_found"]
    assert ingest.metrics.committed.labels(outcome="changed")._value.get() == 2
    wait_until(lambda: committed(topics) == sent, "the batch's offsets were never committed")


def test_a_redelivered_batch_counts_once(api, topics, engine, ingest):
    who = owner(api)
    board_id = board(api, who, update_mode="increment")["id"]
    sent = produce_scores(topics, [(board_id,
                                    {"leaderboard_id": board_id, "player_id": f"p{i % 3}", "score": 1})
                                   for i in range(30)])
    ingest.store_offsets = lambda messages: None  # as if the process died after the commit
    drain(ingest, sent)
    assert sum(entries(engine, board_id).values()) == 30
    ingest.consumer.close()  # nothing stored: the group starts over

    again = build_ingest(topics, engine=engine, poll_timeout_s=0.2)
    try:
        drain(again, sent)
        assert again.metrics.duplicates._value.get() == sent
    finally:
        again.close()
    assert sum(entries(engine, board_id).values()) == 30


def _ingest_process(config, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "score_ingest"],
                            env=stack_env(config, SCORE_INGEST_BATCH="200",
                                                                                   **env),
                            cwd=os.getcwd(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.communicate(timeout=60)[0].decode()
    finally:
        if process.poll() is None:
            process.kill()


def test_kill_9_of_the_ingest_loses_and_doubles_nothing(api, topics, engine):
    who = owner(api)
    board_id = board(api, who, update_mode="increment")["id"]
    players = 50
    sent = produce_scores(topics, [(board_id, {"leaderboard_id": board_id, "player_id": f"p{i % players}",
                                               "score": 1}) for i in range(3000)])

    # Dies after committing its first batch, before storing its offsets.
    died = _ingest_process(topics, INGEST_TEST_EXIT_AFTER_COMMIT="1")
    output = died.communicate(timeout=120)[0].decode()
    assert died.returncode == 137, output
    assert sum(entries(engine, board_id).values()) > 0 and committed(topics) == 0

    # SIGKILLed while it works through the backlog.
    running = _ingest_process(topics)
    try:
        wait_until(lambda: sum(entries(engine, board_id).values()) >= 1000, "the ingest made no progress")
        running.kill()
        running.wait(30)
    finally:
        _stop(running)

    restarted = _ingest_process(topics)
    try:
        wait_until(lambda: committed(topics) >= sent, "the restarted ingest never caught up")
    finally:
        output = _stop(restarted)
    assert restarted.returncode == 0, output
    scores = entries(engine, board_id)
    assert len(scores) == players and set(scores.values()) == {3000 // players}


def test_refused_scores_are_redriven_once_their_board_exists(api, topics, engine, ingest):
    app = create_app(topics)
    board_id = "later-" + os.urandom(4).hex()
    sent = produce_scores(topics, [(board_id, {"leaderboard_id": board_id, "player_id": "ann", "score": 7}),
                                   (board_id, b"[]")])
    drain(ingest, sent)
    listed = app.test_cli_runner().invoke(args=["ops", "dlq", "list", "--queue", "scores"])
    assert listed.exit_code == 0 and "2 dead letters" in listed.output and "reason=not_found" in listed.output

    api.post("/api/v1/leaderboards", {"id": board_id, "name": "Later", "sort_order": "desc",
                                      "update_mode": "increment", "reset_period": "never"},
             token=owner(api).token, expect=201)
    redriven = app.test_cli_runner().invoke(args=["ops", "dlq", "redrive", "--queue", "scores"])
    assert redriven.exit_code == 0, redriven.output
    assert "1 dead letters sent" in redriven.output and "1 still undecodable" in redriven.output
    drain(ingest, 1)
    assert entries(engine, board_id) == {"ann": 7}
    again = app.test_cli_runner().invoke(args=["ops", "dlq", "redrive", "--queue", "scores"])
    assert "0 dead letters sent" in again.output


def test_the_producer_tool_feeds_a_board(topics, engine, ingest):
    app = create_app(topics)
    board_id = "feed-" + os.urandom(4).hex()
    result = app.test_cli_runner().invoke(args=["ops", "produce-scores", "--board", board_id, "--create",
                                                "--players", "40", "--rate", "2000", "--initial-only",
                                                "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert f"produce-scores: 40 messages for {board_id} (40 players) delivered" in result.output
    drain(ingest, 40)
    scores = entries(engine, board_id)
    assert len(scores) == 40 and all(1 <= s <= 100 for s in scores.values())  # an increment board


def test_produce_scores_keeps_its_rate_on_the_topic_and_brokers_it_is_given(api, kafka_topics, topics):
    who = owner(api)
    board_id = board(api, who, update_mode="increment")["id"]
    # The app's own settings name no usable broker and another topic: the options must be what is used.
    app = create_app(kafka_topics.replace(kafka_bootstrap_servers="127.0.0.1:1"))
    rate, duration = 10, 2.0
    started = time.monotonic()
    result = app.test_cli_runner().invoke(args=[
        "ops", "produce-scores", "--board", board_id, "--players", "1", "--rate", str(rate),
        "--duration", str(duration), "--seed", "1", "--topic", topics.score_topic,
        "--bootstrap", topics.kafka_bootstrap_servers])
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    messages = read_topic(topics.kafka_bootstrap_servers, topics.score_topic)
    assert abs(len(messages) - rate * duration) <= 1  # the first score, then rate x duration updates
    assert {json.loads(m.value)["leaderboard_id"] for m in messages} == {board_id}
    # The last message is due (messages - 1) / rate after the first: the run cannot be shorter.
    assert elapsed >= (len(messages) - 1) / rate - 0.05
