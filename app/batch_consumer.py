"""The one shape of the system's Kafka consumers (the cache worker, the score ingest): batches, dead
letters, offsets stored only once a batch is done, and a consumer-lag gauge.

Offsets are stored by hand (`enable.auto.offset.store` off) and committed by auto-commit, so a crash
anywhere before `store_offsets` redelivers the batch: each consumer makes its work idempotent. A
message that can never be handled goes to the consumer's dead-letter topic with its key, value and
headers and the reason in a header (app/dead_letters.py owns that shape), and the partition
goes on; its offset is stored only once the broker holds the dead letter.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from prometheus_client import start_http_server

from app.config import Config, load_config_or_exit
from app.kafka import produce
from app.logs import RateLimitedLog, configure_logging
from app.processing import StreamProcessor, run_until_signalled
from app.dead_letters import dead_letter_headers

LAG_INTERVAL_S = 5.0


def _text(raw: bytes | None) -> str | None:
    """A key or header for a log line; undecodable bytes are shown escaped, never raise."""
    return raw.decode("utf-8", "backslashreplace") if raw is not None else None


class BatchConsumer(StreamProcessor):
    """`run_once` (the subclass's) handles one batch; `run()` loops it and keeps the lag gauge fresh.

    Subclasses set `consumer`, `producer`, `topic`, `dlq_topic`, `batch_size`, `poll_timeout_s`, `log`
    and `metrics` (with `dead_lettered` labelled by reason and `lag` labelled by partition)."""

    consumer = producer = metrics = None
    topic = dlq_topic = ""
    batch_size = 500
    poll_timeout_s = 0.5
    log = logging.getLogger(__name__)

    def __init__(self) -> None:
        super().__init__()
        self._dlq_failures: list[str] = []
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
            except KafkaException as exc:  # a gauge never stops a consumer (partitions unknown while Kafka restarts)
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

    def dead_letter(self, message: Message, reason: str) -> None:
        produce(self.producer, self.dlq_topic, key=message.key(), value=message.value(),
                headers=dead_letter_headers(message.headers(), reason), on_delivery=self._dead_letter_delivered)
        self.metrics.dead_lettered.labels(reason=reason.split(":")[0]).inc()
        event_id = dict(message.headers() or []).get("event_id")
        self.log.warning("dead-lettered %s[%d]@%d: %s", message.topic(), message.partition(), message.offset(),
                         reason, extra={"session_id": _text(message.key()), "event_id": _text(event_id),
                                        "reason": reason, "partition": message.partition(),
                                        "offset": message.offset()})

    def _dead_letter_delivered(self, err, _msg) -> None:
        if err is not None:
            self._dlq_failures.append(str(err))

    def flush_produced(self) -> bool:
        """Wait until the broker holds every message this batch produced (dead letters and any other);
        their batch's offsets are stored only then. False when a shutdown comes first."""
        while self.producer.flush(5.0) > 0:
            if self.shutting_down:
                return False
            self._errors.warning("dlq", "waiting for the dead-letter topic: is Kafka down?")
        if self._dlq_failures:
            failures, self._dlq_failures = self._dlq_failures, []
            raise RuntimeError(f"dead letters not delivered: {failures}")
        return True

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


def serve(process_name: str, build: Callable[[Config], BatchConsumer], metrics_port: Callable[[Config], int]) -> int:
    """The body of a consumer process's main(): configuration, logs, its /metrics, then run until
    SIGTERM or SIGINT."""
    config = load_config_or_exit()
    configure_logging(config, process_name)
    consumer = build(config)
    port = metrics_port(config)
    if port > 0:
        start_http_server(port, addr="127.0.0.1", registry=consumer.metrics.registry)
    consumer.log.info("consuming %s", consumer.topic)
    run_until_signalled(consumer)
    consumer.log.info("stopped")
    return 0
