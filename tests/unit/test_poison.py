"""The consumers' one rule (app/core/poison.py): which failures are a store's (retried) and which a
message's (dead-lettered); and the decoders, which refuse whatever a producer sends with a
PoisonMessage naming the reason, never with anything else."""
from __future__ import annotations

import json

import psycopg
import pytest
import redis
from confluent_kafka import KafkaError, KafkaException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import errors as pg_errors
from sqlalchemy import exc as sa_exc

from app.core.dead_letters import dead_letter_headers
from app.core.errors import Conflict, NotFound, OutcomeUnknown, Unavailable
from app.core.group_commit import CommitFailed
from app.core.poison import MAX_REASON_CHARS, PoisonMessage, dead_letter_reason, store_unavailable
from app.leaderboards.messages import decode_score
from tests.events import EVENTS


def _sql(kind, orig: Exception) -> sa_exc.DBAPIError:
    return kind("SELECT 1", {}, orig)


STORE_DOWN = [
    _sql(sa_exc.OperationalError, psycopg.OperationalError("connection refused")),  # client-side: no SQLSTATE
    _sql(sa_exc.InterfaceError, psycopg.InterfaceError("the connection is closed")),
    _sql(sa_exc.OperationalError, pg_errors.AdminShutdown()),  # 57P01
    _sql(sa_exc.OperationalError, pg_errors.QueryCanceled()),  # 57014: statement timeout
    _sql(sa_exc.OperationalError, pg_errors.SerializationFailure()),  # 40001
    _sql(sa_exc.OperationalError, pg_errors.DiskFull()),  # 53100
    _sql(sa_exc.OperationalError, pg_errors.LockNotAvailable()),  # 55P03
    sa_exc.TimeoutError("QueuePool limit reached"), CommitFailed(sa_exc.OperationalError("COMMIT", {}, None)),
    redis.ConnectionError("Connection refused"), redis.TimeoutError("Timeout reading"),
    redis.exceptions.BusyLoadingError("loading"), redis.exceptions.ReadOnlyError("read only replica"),
    redis.exceptions.ClusterDownError("down"), redis.exceptions.MovedError("3999 127.0.0.1:6381"),
    redis.ResponseError("BUSY Redis is busy running a script"),
    redis.ResponseError("OOM command not allowed"),
    KafkaException(KafkaError(KafkaError._TRANSPORT)), KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT)),
    KafkaException(KafkaError(KafkaError._WAIT_COORD)),
    KafkaException(KafkaError(KafkaError.COORDINATOR_LOAD_IN_PROGRESS)),
    BufferError("Local: Queue full"), Unavailable("busy", "try again"),
    OutcomeUnknown("unknown", "ask again"),
    Conflict("period_busy", "the board's period kept ending during the write"),
]
ABOUT_THE_MESSAGE = [
    _sql(sa_exc.DataError, psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")),
    _sql(sa_exc.DataError, pg_errors.NumericValueOutOfRange()),  # 22003
    _sql(sa_exc.IntegrityError, pg_errors.UniqueViolation()),  # 23505
    _sql(sa_exc.OperationalError, pg_errors.ProgramLimitExceeded()),  # 54000: an OperationalError in psycopg
    redis.ResponseError("Error running script: user_script:12: score out of range"),
    KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)),
    OverflowError("date value out of range"), RecursionError("maximum recursion depth exceeded"),
    TypeError("no script applies answer_scored"), KeyError("payload"), PoisonMessage("invalid_json: x"),
    NotFound("not_found", "no such board"), Conflict("submission_conflict", "reused for another score"),
]


@pytest.mark.parametrize("exc", STORE_DOWN, ids=lambda exc: f"{type(exc).__name__}:{str(exc)[:30]}")
def test_a_store_that_cannot_work_for_now_is_retried(exc):
    assert store_unavailable(exc)


@pytest.mark.parametrize("exc", ABOUT_THE_MESSAGE, ids=lambda exc: f"{type(exc).__name__}:{str(exc)[:30]}")
def test_anything_else_is_about_the_message(exc):
    assert not store_unavailable(exc)


def test_a_reason_keeps_the_service_code_and_names_what_nobody_expected():
    assert dead_letter_reason(NotFound("not_found", "no board b1")) == "not_found: no board b1"
    assert dead_letter_reason(PoisonMessage("invalid_json: too_deep")) == "invalid_json: too_deep"
    assert dead_letter_reason(OverflowError("date value out of range")) == \
        "unexpected: OverflowError: date value out of range"
    assert len(dead_letter_reason(ValueError("x" * 100_000))) == MAX_REASON_CHARS


def test_a_dead_letter_has_one_reason_ours():
    forged = [("dlq_reason", b"nothing to see"), ("trace", None), ("event_id", b"e1")]
    assert dead_letter_headers(forged, "invalid_json: \udcff") == [
        ("trace", None), ("event_id", b"e1"), ("dlq_reason", b"invalid_json: \\udcff")]


@pytest.mark.parametrize("decode", [decode_score, EVENTS.decode])
@pytest.mark.parametrize("raw", [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000, b"[" * 100_000])
def test_nesting_past_the_recursion_limit_is_refused_with_its_reason(decode, raw):
    with pytest.raises(PoisonMessage, match="too_deep"):
        decode(raw)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda inner: (st.lists(inner, max_size=4)
                                   | st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                    max_leaves=30)
FIELDS = st.sampled_from(["leaderboard_id", "player_id", "score", "metadata", "display_name", "submission_id",
                          "game_id", "event_id", "event_type", "version", "aggregate_type", "aggregate_id",
                          "occurred_at", "payload", "session_id"])
OBJECTS = st.dictionaries(FIELDS, JSON, max_size=8)
VALID_SCORE = {"leaderboard_id": "b1", "player_id": "ann", "score": 10}
VALID_EVENT = {"event_id": "0190c1e2-0000-7000-8000-000000000001", "event_type": "session_ended",
               "version": 1,
               "aggregate_type": "quiz_session", "aggregate_id": "0190c1e2-0000-7000-8000-000000000002",
               "occurred_at": "2026-01-01T00:00:00+00:00",
               "payload": {"ended_at": "2026-01-01T00:00:00+00:00"}}
# A message a consumer takes, with a few of its fields (or ones it does not know) replaced by anything.
MUTATED = st.sampled_from([VALID_SCORE, VALID_EVENT]).flatmap(
    lambda valid: st.dictionaries(FIELDS, JSON, min_size=1,
                                  max_size=3).map(lambda changes: {**valid, **changes}))


def _refused_or_decoded(decode, raw) -> None:
    try:
        decode(raw)
    except PoisonMessage:
        pass  # anything else raised fails the test: it would stop a consumer


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(max_size=300) | (JSON | OBJECTS | MUTATED).map(lambda value: json.dumps(value).encode()))
def test_the_decoders_refuse_anything_with_a_poison_message(raw):
    _refused_or_decoded(decode_score, raw)
    _refused_or_decoded(EVENTS.decode, raw)
