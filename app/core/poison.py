"""Poison or outage: the one rule by which every consumer (the cache worker, the score ingest) tells a
message that can never be handled from a store that cannot work for now.

- A store is down when `store_unavailable` says so: PostgreSQL, Redis or Kafka unreachable, timing
  out, failing over, out of resources or shutting down, a COMMIT whose outcome is unknown, a race the
  store settles by itself. The consumer retries the same work with backoff, offsets untouched, and
  resumes by itself once the store is back. Such work is never dead-lettered.
- Anything else raised while decoding or applying one message is about that message, whatever its
  type: the message goes to the dead-letter topic with `dead_letter_reason(exc)` and the partition
  goes on. A consumer never exits on a message.
"""
from __future__ import annotations

import psycopg
import redis as redis_lib
from confluent_kafka import KafkaError, KafkaException
from sqlalchemy import exc as sa_exc

from app.core.errors import Conflict, OutcomeUnknown, ServiceError, Unavailable
from app.core.group_commit import CommitFailed


class PoisonMessage(ValueError):
    """A message that can never be handled as it is; its text is the dead letter's reason,
    `<code>: <detail>` (the code labels the dead-letter counters)."""


# SQLSTATE classes (or codes) of a PostgreSQL that cannot work for now: connection exception,
# transaction rollback (serialization failure, deadlock), insufficient resources, lock not available,
# operator intervention (shutdown, statement timeout), system error. Data, integrity and program-limit
# errors (22, 23, 54, ...) are about what was sent.
_PG_OUTAGES = ("08", "40", "53", "55P03", "57", "58")
# Redis replies of a server refusing for a while (memory, failover, loading, a busy script).
# redis-py drops a known code from the text (OOM, READONLY, ...) and keeps it as status_code.
_REDIS_OUTAGE_REPLIES = ("OOM", "READONLY", "BUSY", "LOADING", "MASTERDOWN", "NOSCRIPT", "CLUSTERDOWN",
                         "TRYAGAIN")
_REDIS_OUTAGES = (redis_lib.ConnectionError, redis_lib.TimeoutError, redis_lib.exceptions.ClusterError,
                  redis_lib.exceptions.MovedError, redis_lib.exceptions.AskError,
                  redis_lib.exceptions.TryAgainError,
                  redis_lib.exceptions.ClusterDownError, redis_lib.exceptions.ReadOnlyError,
                  redis_lib.exceptions.OutOfMemoryError, redis_lib.exceptions.NoScriptError,
                  redis_lib.exceptions.MaxConnectionsError)
_KAFKA_OUTAGES = (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT,
                  KafkaError._MSG_TIMED_OUT, KafkaError._QUEUE_FULL, KafkaError.REQUEST_TIMED_OUT,
                  KafkaError.NOT_ENOUGH_REPLICAS, KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
                  KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                  KafkaError._WAIT_COORD, KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE,
                  KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.UNSTABLE_OFFSET_COMMIT)
# What a reason header keeps of an exception's text.
MAX_REASON_CHARS = 300


def store_unavailable(exc: BaseException) -> bool:
    """True when `exc` says a store cannot work for now (retry with backoff); False when it is about the
    message being handled (dead-letter it)."""
    if isinstance(exc, (CommitFailed, BufferError, sa_exc.TimeoutError, sa_exc.DisconnectionError,
                        Unavailable, OutcomeUnknown)):
        return True
    if isinstance(exc, Conflict):
        return exc.code == "period_busy"  # the board's period kept ending under the write: it settles
    if isinstance(exc, sa_exc.DBAPIError):
        return exc.connection_invalidated or _postgres_unavailable(exc.orig)
    if isinstance(exc, psycopg.Error):
        return _postgres_unavailable(exc)
    if isinstance(exc, _REDIS_OUTAGES):
        return True
    if isinstance(exc, redis_lib.ResponseError):
        code = getattr(exc, "status_code", None) or ""
        return str(exc).startswith(_REDIS_OUTAGE_REPLIES) or code.startswith(_REDIS_OUTAGE_REPLIES)
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        error = exc.args[0]
        return error.retriable() or error.code() in _KAFKA_OUTAGES
    return False


def _postgres_unavailable(error: BaseException | None) -> bool:
    if not isinstance(error, psycopg.Error):
        return False
    if error.sqlstate is None:  # raised by the client: connection refused, lost or closed
        return isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError))
    return error.sqlstate.startswith(_PG_OUTAGES)


def dead_letter_reason(exc: BaseException) -> str:
    """The `dlq_reason` of a message that raised `exc`: `<code>: <detail>`. A refusal of the service
    keeps its error code; an exception nobody expected is `unexpected: <type>: <text>`."""
    if isinstance(exc, ServiceError):
        reason = f"{exc.code}: {exc.message}"
    elif isinstance(exc, PoisonMessage):
        reason = str(exc)
    else:
        reason = f"unexpected: {type(exc).__name__}: {exc}"
    return reason[:MAX_REASON_CHARS]
