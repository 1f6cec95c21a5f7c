"""A fuzzed batch of malformed messages (poison_support.py: random bytes, deep nesting, huge strings
and numbers, NaN, wrong types, missing fields, nulls, keys and headers that are not UTF-8, valid JSON
of the wrong shape) through the real processes, `python -m score_ingest` and `python -m cache_worker`
started as tests/e2e/conftest.py starts them: each message lands in the dead-letter topic with a
reason, the valid messages produced after them land (in PostgreSQL, in Redis), and the processes
never exit on a message: they are still consuming afterwards and stop cleanly on SIGTERM."""
from __future__ import annotations

import json
import random
import re
import uuid
from pathlib import Path

import pytest

from app.core.events import envelope_from_row
from app.leaderboards.events import LEADERBOARD
from scripts.stack.programs import AppStack
from scripts.stack.supervisor import MANUAL
from tests.helpers import stack_env, wait_until
from tests.integration.leaderboard_support import board, owner
from tests.integration.poison_support import (
    SEED,
    Raw,
    assert_each_dead_lettered,
    dead_letters,
    malformed_values,
    produce_all,
    with_bad_keys_and_headers,
)
from tests.integration.test_score_ingest import entries
from tests.integration.worker_support import event_rows, pg_scores, play, publish, redis_scores

SCORE_REASONS = re.compile(r"^(invalid_json|invalid_message|not_found): ")
EVENT_REASONS = re.compile(r"^(undecodable message|unknown event type or version|invalid \w+ v\d+ payload|"
                           r"wrong aggregate|unknown_session|unknown_board): ")


_stacks: list[AppStack] = []


@pytest.fixture(autouse=True)
def _close_stacks():
    yield
    while _stacks:
        _stacks.pop().close()


def _running(name: str, config, logs: Path):
    """`name` (ingest or worker) as its own process, its output in `logs`; returns it and a check that
    fails the test, with the log's end, once it has exited."""
    stack = AppStack(logs, stack_env(config), MANUAL)
    _stacks.append(stack)
    process = stack.start(name)

    def alive() -> bool:
        if process.poll() is not None:
            tail = (logs / f"{name}.log").read_text(errors="replace")[-3000:]
            pytest.fail(f"the {name} exited with {process.returncode} on a message:\n{tail}")
        return True

    return process, alive


def _score(board_id: str, player: str, points: int = 1) -> bytes:
    return json.dumps({"leaderboard_id": board_id, "player_id": player, "score": points}).encode()


def test_the_score_ingest_process_dead_letters_a_fuzzed_batch_and_goes_on(api, topics, engine, tmp_path):
    board_id = board(api, owner(api), update_mode="increment")["id"]
    key = board_id.encode()
    rng = random.Random(SEED)
    valid = {"leaderboard_id": board_id, "player_id": "ann", "score": 1}
    malformed = [Raw(kind, value, key=key) for kind, value in malformed_values(
        rng, valid, ["leaderboard_id", "player_id", "score"], near_limit_field="player_id")]
    malformed += with_bad_keys_and_headers(rng, b"{not json", key)
    malformed += [Raw("unknown board", _score("no-such-board", "ann"), key=key),
                  Raw("unknown field", json.dumps({**valid, "bonus": 1}).encode(), key=key),
                  Raw("score past the exact range", json.dumps({**valid, "score": 2 ** 53}).encode(),
                      key=key)]
    players = [f"p{i}" for i in range(20)]
    produce_all(topics, topics.score_topic, malformed + [Raw("valid", _score(board_id, p), key=key)
                                                         for p in players])

    process, alive = _running("ingest", topics, tmp_path)
    try:
        wait_until(lambda: alive() and entries(engine, board_id) == dict.fromkeys(players, 1),
                   "the scores after the malformed ones never landed")
        reasons = assert_each_dead_lettered(
            dead_letters(topics, topics.score_dlq_topic, len(malformed), alive), malformed)
        assert [r for r in reasons if not SCORE_REASONS.match(r)] == []
        assert alive()
        # Still consuming: a score produced now lands too.
        produce_all(topics, topics.score_topic, [Raw("valid", _score(board_id, "late", 7), key=key)])
        wait_until(lambda: alive() and entries(engine, board_id).get("late") == 7,
                   "the ingest stopped consuming")
    finally:
        process.stop()
    assert process.returncode == 0


def _event(like: dict, **changes) -> bytes:
    return json.dumps({**like, "event_id": str(uuid.uuid4()), **changes}).encode()


def test_the_cache_worker_process_dead_letters_a_fuzzed_batch_and_goes_on(api, topics, engine, redis_client,
                                                                           tmp_path):
    session = play(api, players=3, questions=2)
    sid = session["id"]
    rows = event_rows(engine, sid)
    joined = json.loads(envelope_from_row(rows[0]).to_json())
    key = sid.encode()
    rng = random.Random(SEED)
    fields = ["aggregate_id", "event_id", "event_type", "occurred_at", "payload", "aggregate_type", "version"]
    malformed = [Raw(kind, value, key=key) for kind, value in malformed_values(
        rng, {**joined, "event_id": str(uuid.uuid4())}, fields, near_limit_field="aggregate_id")]
    malformed += with_bad_keys_and_headers(rng, b"{not json", key)
    entry = {"period": "all", "player_id": "ann", "score": 1, "tie_seq": 1, "version": 1,
             "display_name": None, "reached_at": "2026-01-01T00:00:00+00:00"}
    malformed += [
        Raw("payload of another type", _event(joined, event_type="question_closed"), key=key),
        Raw("empty payload", _event(joined, payload={}), key=key),
        Raw("event of another aggregate", _event(joined, event_type="entry_changed", payload=entry), key=key),
        Raw("unknown type", _event(joined, event_type="answer_deleted"), key=key),
        Raw("unknown version", _event(joined, version=99), key=key),
        Raw("unknown session", _event(joined, aggregate_id=str(uuid.uuid4())), key=key),
        Raw("unknown board", _event(joined, event_type="entry_changed", aggregate_type=LEADERBOARD,
                                    aggregate_id="no-such-board", payload=entry), key=key),
        Raw("apply overflows", _event(joined, event_type="session_ended",
                                      payload={"ended_at": "9999-12-31T23:00:00+00:00"}), key=key),
        Raw("NUL in a board id", _event(joined, event_type="entry_changed", aggregate_type=LEADERBOARD,
                                        aggregate_id="b\x00", payload=entry), key=key),
    ]
    produce_all(topics, topics.kafka_topic, malformed)
    publish(topics, rows)

    process, alive = _running("worker", topics, tmp_path)
    try:
        wait_until(lambda: alive() and redis_scores(redis_client, sid) == pg_scores(engine, sid),
                   "the events after the malformed ones never reached Redis")
        reasons = assert_each_dead_lettered(
            dead_letters(topics, topics.kafka_dlq_topic, len(malformed), alive), malformed)
        unexpected = sorted(r for r in reasons if r.startswith("unexpected: "))
        assert [r for r in reasons if not EVENT_REASONS.match(r) and r not in unexpected] == []
        assert len(unexpected) == 2 and "OverflowError" in unexpected[1] and "DataError" in unexpected[0]
        assert alive()
        # Still consuming: another session's events reach Redis too.
        later = play(api, players=2, questions=1)
        publish(topics, event_rows(engine, later["id"]))
        wait_until(lambda: alive() and redis_scores(redis_client,
                                                    later["id"]) == pg_scores(engine, later["id"]),
                   "the worker stopped consuming")
    finally:
        process.stop()
    assert process.returncode == 0
