"""Applying batches of Kafka messages to Redis, at least once delivered, at most once applied.

The worker knows the aggregates only as the projections it is given (app/core/projection.py: a quiz
session's board, a leaderboard), whose event types decode its messages. One batch: decode every
message (poison ones go to the dead-letter topic), group the decodable events by aggregate (each group
in its order), queue each group's apply_batch script calls (per BATCH_CHUNK events of it,
app/core/lua.py) on one non-transactional pipeline per Redis node, which answers one reply per event,
let each projection announce what its events owe other consumers (a leaderboard's change feed), and
only once Redis has answered (and the dead letters and announcements are flushed) store the batch's
offsets. Auto-commit then commits stored offsets.
A crash anywhere before the store redelivers the batch, and the scripts skip what was applied.
Redis or PostgreSQL unreachable: the same batch is retried with backoff, offsets untouched. Any other
failure of the batch is one message's (app/core/poison.py): the batch is halved until that message is
found and dead-lettered, and the others are applied (the scripts skip what an attempt applied).
"""
from __future__ import annotations

import logging
import time
from collections import Counter as Tally
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis as redis_lib
from confluent_kafka import Message
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from app.core import tracing
from app.core.batch_consumer import BatchConsumer, message_traceparent
from app.core.events import Envelope, EventCatalog
from app.core.lua import APPLIED, DUPLICATE, NEEDS_REBUILD
from app.core.metrics import HOP_BUCKETS
from app.core.poison import store_unavailable
from app.core.projection import NO_COMMAND, Announcement, Projection, UnknownAggregate
from app.core.redis_client import is_cluster, node_client

log = logging.getLogger(__name__)

_REBUILD_ROUNDS = 3


@dataclass
class WorkerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.applied = Counter("worker_events_applied", "events whose effect reached Redis",
                               ["event_type"], registry=self.registry)
        self.duplicates = Counter("worker_duplicates_skipped", "redelivered events the scripts skipped",
                                  registry=self.registry)
        self.dead_lettered = Counter("worker_dead_lettered", "messages sent to the dead-letter topic",
                                     ["reason"], registry=self.registry)
        self.rebuilds = Counter("worker_board_rebuilds", "boards rebuilt from PostgreSQL",
                                registry=self.registry)
        self.retries = Counter("worker_batch_retries", "batches retried after Redis or PostgreSQL failed",
                               registry=self.registry)
        self.lag = Gauge("worker_consumer_lag", "messages behind the high watermark", ["partition"],
                         registry=self.registry)
        self.produced_to_applied = Histogram(
            "worker_produced_to_applied_seconds",
            "From an event's Kafka message timestamp (the relay produced it) to Redis answering its batch",
            ["aggregate"], buckets=HOP_BUCKETS, registry=self.registry)


@dataclass
class _Pending:
    message: Message
    envelope: Envelope
    payload: Any
    note: list[str] = field(default_factory=list)  # what its room notes end with: its journey (_journey)
    span: Any = None  # its apply span, while tracing is on


def _journey(message: Message, envelope: Envelope, traced: bool) -> tuple[list[str], Any]:
    """The fields the event's room notes end with (the click's time, its id and the trace it continues) and
    its apply span (tracing on): the web's applied → pushed and click → socket hops read them."""
    traceparent, span = message_traceparent(message), None
    if traced:
        span = tracing.start_span(f"apply {envelope.event_type}", traceparent, kind=SpanKind.CONSUMER,
                                  attributes=lambda: {"event.id": str(envelope.event_id),
                                                      "aggregate.type": envelope.aggregate_type})
        traceparent = tracing.span_traceparent(span, None)
    note = ["clicked_ms", str(int(envelope.occurred_at.timestamp() * 1000)),
            "event_id", str(envelope.event_id)]
    if traceparent is not None:
        note += [tracing.TRACEPARENT, traceparent]
    return note, span


class CacheWorker(BatchConsumer):
    """Consumes `config.kafka_topic` and applies each event once; `run_once` handles one batch,
    `run()` loops it (app/core/batch_consumer.py) and keeps the consumer-lag gauge fresh."""

    log = log

    def __init__(self, config, consumer, producer, redis, projections: list[Projection], *,
                 metrics: WorkerMetrics | None = None, poll_timeout_s: float = 0.5,
                 max_backoff_s: float = 5.0, after_apply: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.config = config
        self.consumer = consumer
        self.producer = producer
        self.topic, self.dlq_topic = config.kafka_topic, config.kafka_dlq_topic
        self.batch_size = config.worker_batch_size
        self.redis = redis
        self.projections = {projection.events.aggregate_type: projection for projection in projections}
        self.event_types = EventCatalog(*(projection.events for projection in projections))
        self.metrics = metrics or WorkerMetrics()
        self.poll_timeout_s = poll_timeout_s
        self.max_backoff_s = max_backoff_s
        self.after_apply = after_apply

    def run_once(self) -> int:
        """Consume, apply and store one batch; returns how many messages it held."""
        messages = self.next_batch()
        if not messages:
            return 0
        pending = []
        traced = tracing.enabled()
        for message in messages:
            try:
                envelope = self.event_types.decode(message.value())
                pending.append(_Pending(message, envelope, self.event_types.parse(envelope),
                                        *_journey(message, envelope, traced)))
            except Exception as exc:  # noqa: BLE001 - whatever one message raises is about it (app/core/poison.py)
                self.refuse(message, exc)
        announced = self.retry_or_isolate("applying events", pending, self._apply,
                                          message_of=lambda item: item.message)
        if traced:
            for item in pending:
                item.span.end()
        if announced is None:
            return 0  # stopping while Redis was down: nothing stored, the batch is redelivered
        self._record_applied(pending)
        if self.after_apply is not None:
            self.after_apply()
        if not self.flush_produced():
            return 0  # stopping while the broker was down: nothing stored, the batch is redelivered
        try:
            for announcement in announced:  # delivered (the flush above): not to be announced again
                announcement.remember()
        except Exception as exc:  # not remembered, a top is only announced once more
            if not store_unavailable(exc):
                raise
            self._errors.warning("remember", "announced tops not remembered (%s)", exc)
        self.store_offsets(messages)
        return len(messages)

    def _record_applied(self, pending: list[_Pending]) -> None:
        """The produced → applied hop of each event of the batch, by aggregate."""
        now_ms = time.time() * 1000
        hops = {}
        for item in pending:
            produced_ms = item.message.timestamp()[1]
            if produced_ms > 0:
                aggregate_type = item.envelope.aggregate_type
                child = hops.get(aggregate_type)
                if child is None:
                    child = hops[aggregate_type] = self.metrics.produced_to_applied.labels(aggregate_type)
                child.observe(max(now_ms - produced_ms, 0.0) / 1000)

    def _apply(self, pending: list[_Pending]) -> list[Announcement]:
        """Apply the batch, let each projection announce what its events owe other consumers, and only then
        dead-letter the events Redis or PostgreSQL refused: an attempt that fails leaves no dead letter
        behind to be sent twice."""
        refused = self.apply_events(pending)
        announced: list[Announcement] = []
        for aggregate_type, projection in self.projections.items():
            events = [(item.envelope, item.payload) for item in pending
                      if item.envelope.aggregate_type == aggregate_type]
            if events:
                announced += projection.announce(events, self.producer)
        for item, reason in refused:
            self.dead_letter(item.message, reason)
        return announced

    def apply_events(self, pending: list[_Pending]) -> list[tuple[_Pending, str]]:
        """Apply `pending` in order; a session or a board period Redis lacks is rebuilt first. Returns the
        events that can never be applied (refused by the script, or of a session or board PostgreSQL lacks),
        each with its reason."""
        refused: list[tuple[_Pending, str]] = []
        for _ in range(_REBUILD_ROUNDS):
            results = self._run_scripts(pending)
            retry: list[_Pending] = []
            to_rebuild: dict[tuple, None] = {}
            applied: Tally[str] = Tally()
            duplicates = 0
            transient = None
            for item, result in zip(pending, results):
                if isinstance(result, Exception) and store_unavailable(result):
                    transient = result  # the whole batch is retried: nothing after it is handled now
                    break
                if isinstance(result, Exception):
                    refused.append((item, f"rejected_by_redis: {result}"))
                elif result == APPLIED:
                    applied[item.envelope.event_type] += 1
                elif result == DUPLICATE:
                    duplicates += 1
                elif result == NEEDS_REBUILD:
                    retry.append(item)
                    to_rebuild[self._rebuild_target(item)] = None
            for event_type, count in applied.items():
                self.metrics.applied.labels(event_type=event_type).inc(count)
            if duplicates:
                self.metrics.duplicates.inc(duplicates)
            if transient is not None:
                raise transient
            if not retry:
                return refused
            # Replay in order only the events that were refused; the others are applied.
            unknown = set()
            for target in to_rebuild:
                try:
                    self.projections[target[0]].rebuild(target[1:])
                    self.metrics.rebuilds.inc()
                    log.info("rebuilt from PostgreSQL: %s", " ".join(target[1:]),
                             extra={"session_id": target[1]})
                except UnknownAggregate:
                    unknown.add(target)
            for item in retry:
                if self._rebuild_target(item) in unknown:
                    refused.append((item, self.projections[item.envelope.aggregate_type].unknown_reason))
            pending = [item for item in retry if self._rebuild_target(item) not in unknown]
            if not pending:
                return refused
        raise redis_lib.ConnectionError("boards kept vanishing while applying a batch")

    def _rebuild_target(self, item: _Pending) -> tuple:
        aggregate_type = item.envelope.aggregate_type
        return (aggregate_type, *self.projections[aggregate_type].rebuild_target(item.envelope, item.payload))

    def _run_scripts(self, pending: list[_Pending]) -> list[Any]:
        """The reply of every event of `pending`, in order: each session's or board's events go in one
        apply_batch call per BATCH_CHUNK, on one pipeline per Redis node (redis-py's cluster pipeline
        refuses EVALSHA)."""
        groups: dict[tuple[str, str], list[int]] = {}
        for index, item in enumerate(pending):
            groups.setdefault((item.envelope.aggregate_type, item.envelope.aggregate_id), []).append(index)
        nodes: dict[int, tuple[Any, list[tuple[str, str, list[int]]]]] = {}
        for (aggregate_type, aggregate_id), indexes in groups.items():
            node = node_client(self.redis, self.projections[aggregate_type].slot_key(aggregate_id))
            nodes.setdefault(id(node), (node, []))[1].append((aggregate_type, aggregate_id, indexes))
        results: list[Any] = [None] * len(pending)
        for node, on_node in nodes.values():
            pipe = node.pipeline(transaction=False)
            steps = [self.projections[aggregate_type].queue(
                pipe, aggregate_id, [(pending[i].envelope, pending[i].payload) for i in indexes],
                [pending[i].note for i in indexes])
                for aggregate_type, aggregate_id, indexes in on_node]
            replies = iter(pipe.execute(raise_on_error=False))
            for (aggregate_type, _, indexes), sizes in zip(on_node, steps):
                settle = self.projections[aggregate_type].settle
                at = 0
                for size in sizes:
                    answers = _answers(next(replies), size) if size != NO_COMMAND else [None]
                    for index, answer in zip(indexes[at:at + len(answers)], answers):
                        item = pending[index]
                        results[index] = answer if isinstance(answer, Exception) else settle(
                            node, item.envelope, item.payload, answer)
                    at += len(answers)
        if any(isinstance(r, Exception) and store_unavailable(r) for r in results) and is_cluster(self.redis):
            self.redis.nodes_manager.initialize()  # slots moved: learn the new layout before the retry
        return results


def _answers(reply: Any, events: int) -> list[Any]:
    """One answer per event of an apply_batch call: its replies, or the call's own failure for each."""
    if isinstance(reply, list) and len(reply) == events:
        return reply
    if not isinstance(reply, Exception):
        reply = redis_lib.ResponseError(f"apply_batch answered {reply!r:.200} for {events} events")
    return [reply] * events
