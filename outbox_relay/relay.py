"""Moves committed `events` rows (the outbox) to Kafka, keyed by aggregate, losing none: what both relay
modes share.

Ordering. With one active relay a session's events reach Kafka in the order they became visible,
which for events whose transactions conflict (and so are causally ordered) is their commit order;
the producer is idempotent, so retries cannot reorder within a partition. With several relays
claiming at once, SKIP LOCKED lets relay B publish a session's later event while relay A still
holds an earlier one: the union is complete, but per-session order is lost. So by default a relay
only claims while it holds a PostgreSQL session advisory lock (leader election) taken on the very
connection that claims: the others wait on standby and take over within a poll interval when the
leader dies (PostgreSQL releases the lock with its connection). Leadership and claims share one
connection, so a relay that lost its connection cannot commit a claim either; the only window for
reordering is a leader whose connection died while its deliveries were in flight. Key-hash
ownership (`hashtext(aggregate_id::text) % N`) would scale claims across relays but needs a fixed
N and a rebalance story; one relay drains tens of thousands of events per second, well above the
planned 2,500 answers/s, so leader election is the simpler correct choice.

Wake-up: a dedicated autocommit connection LISTENs on `outbox_events` (the insert trigger
notifies); the poll interval is the fallback for notifications lost while disconnected. A full
batch loops at once.

Housekeeping (the leader, every PURGE_EVERY_S): partitions of `events` are created ahead and old,
fully published ones dropped whole; only the default partition is pruned row by row
(outbox_relay/partitions.py).

Two modes (RELAY_MODE) share this base class: leadership, the wake-up, producing and waiting for every
delivery report (`_produce`), the outage handling of the loop, and the housekeeping's schedule. A mode
is a subclass that says how a batch is read and acknowledged (`relay_batch`), how its backlog is
measured (`_record_lag`) and how its retention runs (`_retire`): `poll` (outbox_relay/poll.py,
`PollRelay`: claim and mark rows; any PostgreSQL) and `wal` (outbox_relay/capture.py, `WalRelay`, the
default: read committed inserts from a logical replication slot).
"""
from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import psycopg
from confluent_kafka import KafkaError, KafkaException
from opentelemetry.trace import SpanKind
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from app.core import tracing
from app.core.kafka import produce
from app.core.logs import RateLimitedLog
from app.core.processing import StreamProcessor
from app.core.retry import Backoff
from outbox_relay import partitions
from outbox_relay.listener import OutboxListener
from outbox_relay.messages import Outgoing

log = logging.getLogger("outbox_relay")

# One leader per database: any constant shared by every relay works.
LEADER_LOCK_KEY = zlib.crc32(b"livequiz.outbox_relay")
PURGE_EVERY_S = 30.0
LAG_EVERY_S = 5.0
# How long a stopping relay waits for in-flight deliveries before giving up on them.
STOP_GRACE_S = 4.0
# A producer whose broker is unreachable keeps messages queued for delivery.timeout.ms; the relay
# keeps the claim open and waits, logging this often.
OUTAGE_LOG_EVERY_S = 10.0

# Delivery reports are served once per this many messages produced (and when the local queue is full).
POLL_EVERY = 500
_NONE = object()


def _text(headers: Any, event_id: Any) -> str:
    """An event id for a log line or a span: the message's `event_id` header when a delivery report
    carries it, else the id the relay read (text or UTF-8)."""
    for name, value in headers or ():
        if name == "event_id":
            event_id = value
    return event_id.decode() if isinstance(event_id, bytes) else str(event_id)


class Producer(Protocol):
    def produce(self, topic: str, value: bytes, key: bytes, headers: Any, on_delivery: Callable) -> None: ...
    def poll(self, timeout: float) -> int: ...
    def flush(self, timeout: float) -> int: ...


@dataclass
class RelayStats:
    """Progress of one relay, read by the metrics endpoint and tests."""

    published_total: int = 0
    batches_total: int = 0
    outbox_lag_s: float = 0.0
    unpublished: int = 0
    wal_behind_bytes: int = 0  # wal mode: WAL between the server's position and the slot's confirmed one
    is_leader: bool = False
    failover_republished_total: int = 0  # wal mode: events republished on a new leader without the slot
    leader_unavailable: bool = False  # the last attempt reached no PostgreSQL leader (until one answers)
    observers: list[Any] = field(default_factory=list)

    def record_batch(self, claimed: int, published: int) -> None:
        self.batches_total += 1
        self.published_total += published
        for observer in self.observers:
            observer.batch(claimed, published)

    def record_produced(self, aggregate_type: str, commit_to_produced_s: float) -> None:
        for observer in self.observers:
            observer.produced(aggregate_type, commit_to_produced_s)

    def record_failover_republished(self, count: int) -> None:
        self.failover_republished_total += count
        for observer in self.observers:
            observer.failover_republished(count)

    def record_leader(self, unavailable: bool) -> None:
        self.leader_unavailable = unavailable
        for observer in self.observers:
            observer.leader(unavailable)

    def record_lag(self, lag_s: float, unpublished: int, wal_behind_bytes: int = 0) -> None:
        self.outbox_lag_s, self.unpublished, self.wal_behind_bytes = lag_s, unpublished, wal_behind_bytes
        for observer in self.observers:
            observer.lag(lag_s, unpublished, wal_behind_bytes)


@dataclass(frozen=True)
class BatchResult:
    claimed: int
    published: int
    failed: int
    more: bool = False  # a backlog is left: the loop goes on at once


class Relay(StreamProcessor):
    """The loop of the relay process (`run()`), leadership and producing; a mode (a subclass) reads and
    acknowledges its batches."""

    mode = ""

    def __init__(self, engine: Engine, producer: Producer | None, topic: str, *, batch_size: int = 1000,
                 poll_interval_s: float = 1.0, retention_hours: float = 24.0, partition_days_ahead: int = 2,
                 leader_lock: bool = True,
                 listener: OutboxListener | None = None, stats: RelayStats | None = None,
                 before_mark: Callable[[list[Any]], None] | None = None,
                 producer_factory: Callable[[], Producer] | None = None):
        super().__init__()
        self.engine = engine
        self.producer = producer
        # Rebuilds the producer after a fatal error (e.g. the idempotent producer lost its state).
        self.producer_factory = producer_factory
        self.topic = topic
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.retention_hours = retention_hours
        self.partition_days_ahead = partition_days_ahead
        self.leader_lock = leader_lock
        self.listener = listener
        self.stats = stats or RelayStats()
        self.before_mark = before_mark  # test hook, called with the delivered ids before the mark
        self._conn: Connection | None = None
        self._errors = RateLimitedLog(log, OUTAGE_LOG_EVERY_S)
        # After an outage of PostgreSQL or Kafka, and after deliveries that failed.
        self._outage_backoff = Backoff(first_s=0.5, cap_s=10.0)
        self._failure_backoff = Backoff(first_s=0.5, cap_s=30.0)
        self._next_purge = 0.0
        self._next_lag = 0.0
        self._producer_broken: KafkaError | None = None

    # -- connection and leadership -------------------------------------------------------------

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = self.engine.connect()
        return self._conn

    def _drop_connection(self) -> None:
        """Forget a connection that failed; invalidating it also drops its advisory lock."""
        if self._conn is not None:
            try:
                self._conn.invalidate()
                self._conn.close()
            except SQLAlchemyError:
                pass
            self._conn = None
        self.stats.is_leader = False

    def is_leader(self) -> bool:
        """Take (or confirm) the leader lock; without leader election every relay claims."""
        if not self.leader_lock:
            return True
        if self.stats.is_leader:
            return True
        conn = self._connection()
        acquired = bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                     {"key": LEADER_LOCK_KEY}).scalar())
        conn.commit()
        if acquired:
            log.info("relay is the leader: claiming events")
        self.stats.is_leader = acquired
        return acquired

    def close(self) -> None:
        if self.producer is not None:  # None: Kafka Connect relays, this process keeps the outbox
            self.producer.flush(1.0)  # in-flight batches were awaited already; the rest stays unpublished
        if self._conn is not None:
            try:
                if self.stats.is_leader:
                    self._conn.rollback()
                    self._conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LEADER_LOCK_KEY})
                    self._conn.commit()
                self._conn.close()
            except SQLAlchemyError:
                self._drop_connection()
            self._conn = None
        self.stats.is_leader = False
        if self.listener is not None:
            self.listener.close()

    # -- one batch -----------------------------------------------------------------------------

    def relay_batch(self) -> BatchResult:
        """Read, produce and acknowledge one batch. Raises on PostgreSQL errors (nothing acknowledged
        then)."""
        raise NotImplementedError

    def _report_failures(self, failed: list[str], total: int) -> None:
        if failed:
            self._errors.warning("delivery",
                                 "%d of %d events not delivered (first: %s); they stay unpublished",
                                 len(failed), total, failed[0])
        else:
            self._errors.recovered("delivery", "deliveries succeed again")

    def _produce(self, messages: Iterable[Outgoing]) -> tuple[list[Any], list[str]]:
        """Produce `messages` (any iterable, consumed as it is produced) and wait for every delivery
        report: (the `ack` of each delivered message, failure reasons).

        Per event, only the produce call: the delivery report's callback is shared by the consecutive
        messages of one ack and aggregate type (a wal-mode transaction's), and reports are served every
        POLL_EVERY messages (and whenever the local queue is full), not after each."""
        delivered: list[Any] = []
        failed: list[str] = []
        fatal: list[KafkaError] = []
        pending = produced = 0
        observed = bool(self.stats.observers)

        def on_delivery(message: Outgoing, span: Any, err: KafkaError | None, msg: Any) -> None:
            nonlocal pending
            pending -= 1
            if span is not None:
                span.end()
            if err is None:
                delivered.append(message.ack)
                # "Produced" is the message's timestamp (CreateTime, this process's clock), which the
                # worker's produced → applied hop starts from.
                if observed and message.committed_s and msg is not None:
                    produced_ms = msg.timestamp()[1]
                    if produced_ms > 0:
                        self.stats.record_produced(message.aggregate_type,
                                                   max(produced_ms / 1000 - message.committed_s, 0.0))
            else:
                headers = None if msg is None else msg.headers()
                failed.append(f"{_text(headers, message.event_id)}: {err.str()}")
                if err.fatal():
                    fatal.append(err)

        if self._producer_broken is not None:
            raise KafkaException(self._producer_broken)
        traced = tracing.enabled()
        topic, send = self.topic, self.producer.produce
        callback, ack, aggregate_type = None, _NONE, None
        for message in messages:
            headers, span = message.headers, None
            if traced:
                span = tracing.start_span(
                    f"publish {self.topic}", message.traceparent, kind=SpanKind.PRODUCER,
                    attributes=lambda message=message: {
                        "messaging.system": "kafka", "event.id": _text(None, message.event_id),
                        "messaging.destination.name": self.topic})
                headers = [*headers, (tracing.TRACEPARENT, tracing.span_traceparent(span, None).encode())]
                if not span.is_recording():
                    span = None  # nothing to end at the delivery report: the shared callback serves it
            elif message.traceparent is not None:
                headers = [*headers, (tracing.TRACEPARENT, message.traceparent.encode())]
            if span is not None or message.ack != ack or message.aggregate_type != aggregate_type:
                callback = partial(on_delivery, message, span)
                ack, aggregate_type = message.ack, message.aggregate_type
            try:
                send(topic, value=message.value, key=message.key, headers=headers, on_delivery=callback)
            except BufferError:  # the local queue is full: the shared helper serves reports until it is not
                produce(self.producer, topic, key=message.key, value=message.value, headers=headers,
                        on_delivery=callback)
            pending += 1
            produced += 1
            if produced % POLL_EVERY == 0:
                self.producer.poll(0)
        self._await_deliveries(lambda: pending)
        if fatal:
            # Mark what was delivered first: the caller sees the fatal error on its next produce.
            self._producer_broken = fatal[0]
        return delivered, failed

    def _await_deliveries(self, pending: Callable[[], int]) -> None:
        """Serve delivery reports until none is pending; a stopping relay waits STOP_GRACE_S at most."""
        started = time.monotonic()
        stop_deadline: float | None = None
        while pending() > 0:
            self.producer.poll(0.1)
            if self.shutting_down:
                stop_deadline = stop_deadline or time.monotonic() + STOP_GRACE_S
                if time.monotonic() >= stop_deadline:
                    log.warning("stopping with %d deliveries unconfirmed; those events stay unpublished",
                                pending())
                    return
            waited = time.monotonic() - started
            if waited > OUTAGE_LOG_EVERY_S:
                self._errors.warning("broker", "waiting %.0f s for %d deliveries: is Kafka down?",
                                     waited, pending())
        if time.monotonic() - started > OUTAGE_LOG_EVERY_S:
            self._errors.recovered("broker", "Kafka delivers again after %.1f s", time.monotonic() - started)

    # -- housekeeping --------------------------------------------------------------------------

    def housekeeping(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now >= self._next_lag:
            self._next_lag = now + LAG_EVERY_S
            self._record_lag()
        if force or now >= self._next_purge:
            self._next_purge = now + PURGE_EVERY_S
            # Ahead first, so inserts keep landing in daily partitions whatever the retention does.
            partitions.ensure_partitions(self.engine, self.partition_days_ahead)
            if self.retention_hours > 0:
                self._retire()

    def _record_lag(self) -> None:
        """Measure the backlog (stats.record_lag)."""
        raise NotImplementedError

    def _retire(self) -> None:
        """Retention: drop what is old and relayed."""
        raise NotImplementedError

    # -- the loop ------------------------------------------------------------------------------

    def _run_once(self) -> None:
        """One round: claim and publish a batch when leading, then wait for more unless a backlog remains.
        Outages are logged once per interval and retried with backoff."""
        try:
            result = BatchResult(0, 0, 0)
            if self.is_leader():
                result = self.relay_batch()
                if result.more and not result.failed:
                    return  # a backlog: no waiting
                self.housekeeping()
            if result.failed:
                self.wait(self._failure_backoff.next_delay())
                return
            self._failure_backoff.reset()
            self._outage_backoff.reset()
            self._errors.recovered("postgres", "PostgreSQL answers again")
            self.stats.record_leader(unavailable=False)
            self._wait_for_events()
        except KafkaException as exc:
            delay = self._outage_backoff.next_delay()
            self._errors.warning("producer", "producer failed (%s); retrying in %.1f s", exc, delay)
            if self.producer_factory is not None:
                self.producer = self.producer_factory()
                self._producer_broken = None
            self.wait(delay)
        except (DBAPIError, SQLAlchemyError, psycopg.Error) as exc:
            # No leader behind pg-lb (a failover), a connection cut, or the server down: the same wait.
            self._drop_connection()
            self.stats.record_leader(unavailable=True)
            delay = self._outage_backoff.next_delay()
            self._errors.warning("postgres", "PostgreSQL unavailable: no leader reachable (%s); retrying in "
                                 "%.1f s (relay_leader_unavailable)",
                                 str(exc).splitlines()[0] if str(exc) else type(exc).__name__, delay)
            self.wait(delay)

    def _wait_for_events(self) -> None:
        active = self.stats.is_leader or not self.leader_lock
        if self.listener is None or not active:
            self.wait(self.poll_interval_s)  # standby: retry the leader lock each interval
            return
        self.listener.wait(self.poll_interval_s, lambda: self.shutting_down)
