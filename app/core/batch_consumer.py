"""The one shape of the system's Kafka consumers (the cache worker, the score ingest): batches, dead
letters, offsets stored only once a batch is done, and a consumer-lag gauge.

Offsets are stored by hand (`enable.auto.offset.store` off) and committed by auto-commit, so a crash
anywhere before `store_offsets` redelivers the batch: each consumer makes its work idempotent. A
message that can never be handled goes to the consumer's dead-letter topic with its key, value and
headers and the reason in a header (app/core/dead_letters.py owns that shape), and the partition
goes on; its offset is stored only once the broker holds the dead letter. Which failures are a
message's and which a store's is app/core/poison.py's one rule: `refuse` and `retry_or_isolate` apply it.
"""
from __future__ import annotations

import logging
import operator
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import start_http_server

from app.core.config import Config, load_config_or_exit
from app.core.dead_letters import Outgoing, dead_letter_headers
from app.core.kafka import produce
from app.core.logs import RateLimitedLog, configure_logging
from app.core.poison import PoisonMessage, dead_letter_reason, store_unavailable
from app.core.processing import StreamProcessor, run_until_signalled
from app.core.retry import Backoff
from app.core.tracing import (
    TRACEPARENT,
    configure_tracing,
    flush_tracing,
    normal_traceparent,
    register_tracing_metrics,
)

LAG_INTERVAL_S = 5.0
LOGGED_BYTES = 200  # of a key or header in a log line

Item = TypeVar("Item")
Result = TypeVar("Result")


# confluent-kafka returns a value yet leaves an exception set when a header name is not UTF-8. A call
# site CPython 3.11 has specialised does not check for that, and the exception would go off at some later,
# unrelated call; a call through methodcaller always checks, and raises SystemError there and then.
_read_headers = operator.methodcaller("headers")


def message_traceparent(message: Message) -> str | None:
    """The well-formed `traceparent` header of `message` (its producer's span context), else None: a
    missing, malformed or unreadable header is no trace, never a failure of the message."""
    try:
        headers = _read_headers(message)
    except SystemError:  # a header name that is not UTF-8: the client cannot read it
        return None
    for name, value in headers or ():
        if name == TRACEPARENT:
            return normal_traceparent(value)
    return None


def _text(raw: bytes | None) -> str | None:
    """A key or header for a log line; undecodable bytes are shown escaped, never raise."""
    return raw[:LOGGED_BYTES].decode("utf-8", "backslashreplace") if raw is not None else None


def _too_large(error: KafkaError) -> bool:
    return error.code() == KafkaError.MSG_SIZE_TOO_LARGE


class BatchConsumer(StreamProcessor):
    """`run_once` (the subclass's) handles one batch; `run()` loops it and keeps the lag gauge fresh.

    Subclasses set `consumer`, `producer`, `topic`, `dlq_topic`, `batch_size`, `poll_timeout_s`,
    `max_backoff_s`, `log` and `metrics` (with `dead_lettered` labelled by reason, `retries`, and `lag`
    labelled by partition)."""

    consumer = producer = metrics = None
    topic = dlq_topic = ""
    batch_size = 500
    poll_timeout_s = 0.5
    max_backoff_s = 5.0
    log = logging.getLogger(__name__)

    def __init__(self) -> None:
        super().__init__()
        self._undelivered: list[tuple[Outgoing, KafkaError]] = []
        self._next_lag = 0.0
        self._errors = RateLimitedLog(self.log)

    def subscribe(self) -> None:
        self.consumer.subscribe([self.topic])

    def run_once(self) -> int:
        raise NotImplementedError

    def _run_once(self) -> None:
        self.run_once()
        if time.monotonic() >= self._next_lag:
            try:
                self.update_lag()
            except KafkaException as exc:
                # A gauge never stops a consumer (partitions unknown while Kafka restarts).
                self._errors.warning("lag", "consumer lag not updated: %s", exc)
            self._next_lag = time.monotonic() + LAG_INTERVAL_S

    def next_batch(self) -> list[Message]:
        """Wait for the first message only, then take whatever else is already fetched; errors are logged
        and left out.

        `consume(n, timeout)` alone waits the whole timeout unless n messages arrive, which would add
        up to `poll_timeout_s` to every change at low load.
        """
        first = self.consumer.poll(self.poll_timeout_s)
        if first is None:
            return []
        messages = [first, *self.consumer.consume(num_messages=self.batch_size - 1, timeout=0)]
        return [m for m in messages if not self._is_error(m)]

    def _is_error(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return False
        if error.code() != KafkaError._PARTITION_EOF:
            self.log.warning("consumer error: %s", error)
        return True

    def refuse(self, message: Message, exc: Exception) -> None:
        """`message` raised `exc`: dead-letter it, unless a store is down (app/core/poison.py), which is
        raised for the caller to retry."""
        if store_unavailable(exc):
            raise exc
        self.dead_letter(message, dead_letter_reason(exc), unexpected=not isinstance(exc, PoisonMessage))

    def retry_or_isolate(self, what: str, items: list[Item], attempt: Callable[[list[Item]], list[Result]],
                         message_of: Callable[[Item], Message]) -> list[Result] | None:
        """`attempt(items)`, retried with backoff while a store is down (None when a shutdown comes first).
        When it raises anything else, one of the items is at fault: the items are halved and each half is
        attempted again, down to the one message it is about, which is dead-lettered and adds no result.
        Each attempt must be safe to repeat (the consumers' work is idempotent); the results of the
        halves are concatenated in order."""
        backoff = Backoff(first_s=0.1, cap_s=self.max_backoff_s)
        while True:
            try:
                return attempt(items) if items else []
            except Exception as exc:  # noqa: BLE001 - the rule of app/core/poison.py sorts it
                if not store_unavailable(exc):
                    return self._isolate(what, items, attempt, message_of, exc)
                self.metrics.retries.inc()
                delay = backoff.next_delay()
                self._errors.warning(what, "%s failed (%s); retrying in %.1fs", what, exc, delay)
                if self.wait(delay):
                    return None

    def _isolate(self, what, items, attempt, message_of, exc: Exception):
        if len(items) == 1:
            self.refuse(message_of(items[0]), exc)
            return []
        results = []
        half = len(items) // 2
        for part in (items[:half], items[half:]):
            part_results = self.retry_or_isolate(what, part, attempt, message_of)
            if part_results is None:
                return None
            results += part_results
        return results

    def dead_letter(self, message: Message, reason: str, *, unexpected: bool = False) -> None:
        try:
            headers = _read_headers(message) or []
        except SystemError:  # a header name that is not UTF-8: the client cannot read it
            headers, reason = [], f"{reason} (headers left out: a header name is not UTF-8)"
        self._send(Outgoing(message.key(), message.value(), headers, reason))
        self.metrics.dead_lettered.labels(reason=reason.split(":")[0]).inc()
        event_id = dict(headers).get("event_id")
        # An exception nobody expected is a bug to fix: its traceback goes with it.
        self.log.warning("dead-lettered %s[%d]@%d: %s", message.topic(), message.partition(),
                         message.offset(), reason, exc_info=unexpected,
                         extra={"session_id": _text(message.key()), "event_id": _text(event_id),
                                "reason": reason, "partition": message.partition(),
                                "offset": message.offset()})

    def _send(self, letter: Outgoing) -> None:
        try:
            produce(self.producer, self.dlq_topic, key=letter.key, value=letter.value,
                    headers=dead_letter_headers(letter.headers, letter.reason),
                    on_delivery=partial(self._dead_letter_delivered, letter))
        except KafkaException as exc:  # refused before it left: too large for the producer, or no such topic
            self._undelivered.append((letter, exc.args[0]))

    def _dead_letter_delivered(self, letter: Outgoing, err: KafkaError | None, _msg) -> None:
        if err is not None:
            self._undelivered.append((letter, err))

    def flush_produced(self) -> bool:
        """Wait until the broker holds every message this batch produced (dead letters and any other);
        their batch's offsets are stored only then. A dead letter too large for the dead-letter topic is
        cut to fit (app/core/dead_letters.py); one the broker refuses otherwise is sent again with backoff, as
        Kafka being down is. False when a shutdown comes first."""
        backoff = Backoff(first_s=0.1, cap_s=self.max_backoff_s)
        while True:
            while self.producer.flush(5.0) > 0:
                if self.shutting_down:
                    return False
                self._errors.warning("dlq", "waiting for the dead-letter topic: is Kafka down?")
            if not self._undelivered:
                return True
            undelivered, self._undelivered = self._undelivered, []
            if any(not (_too_large(error) and not letter.cut) for letter, error in undelivered):
                delay = backoff.next_delay()
                self._errors.warning("dlq", "dead letters not delivered (%s); sending them again in %.1fs",
                                     "; ".join(sorted({error.str() for _, error in undelivered})), delay)
                if self.wait(delay):
                    return False
            for letter, error in undelivered:
                self._send(letter.cut_to_fit() if _too_large(error) and not letter.cut else letter)

    def store_offsets(self, messages: list[Message]) -> None:
        # One offset per partition, its batch's last (a batch holds each partition's messages in order).
        last: dict[tuple[str, int], int] = {}
        for m in messages:
            last[(m.topic(), m.partition())] = m.offset()
        try:
            self.consumer.store_offsets(offsets=[
                TopicPartition(topic, partition, offset + 1) for (topic, partition), offset in last.items()])
        except KafkaException as exc:
            # The partitions moved to another member during a long outage: it will redeliver them.
            self.log.warning("could not store offsets (%s); the batch will be redelivered", exc)

    def update_lag(self) -> int:
        """Set the lag gauge from the watermarks of the assigned partitions; returns the sum."""
        total = 0
        assignment = self.consumer.assignment()
        if not assignment:
            return 0
        for position in self.consumer.position(assignment):
            low, high = self.consumer.get_watermark_offsets(
                TopicPartition(position.topic, position.partition), timeout=2.0, cached=False)
            offset = position.offset if position.offset >= 0 else low
            lag = max(high - offset, 0)
            self.metrics.lag.labels(partition=str(position.partition)).set(lag)
            total += lag
        return total

    def close(self) -> None:
        """Commit what was stored, leave the group, and flush what was produced."""
        try:
            self.consumer.commit(asynchronous=False)
        except Exception as exc:  # noqa: BLE001 - nothing stored since the last auto-commit
            self.log.info("final commit: %s", exc)
        self.consumer.close()
        self.producer.flush(10.0)


def serve(process_name: str, build: Callable[[Config], BatchConsumer],
          metrics_port: Callable[[Config], int]) -> int:
    """The body of a consumer process's main(): configuration, logs, its /metrics, then run until
    SIGTERM or SIGINT."""
    config = load_config_or_exit()
    configure_logging(config, process_name)
    traced = configure_tracing(config, process_name)
    consumer = build(config)
    if traced:
        register_tracing_metrics(consumer.metrics.registry)
    port = metrics_port(config)
    if port > 0:
        start_http_server(port, addr=config.metrics_host, registry=consumer.metrics.registry)
    consumer.log.info("consuming %s", consumer.topic)
    run_until_signalled(consumer)
    flush_tracing()
    consumer.log.info("stopped")
    return 0
