"""Kafka clients built the one way every process uses them."""
from __future__ import annotations

import sys
import time
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from app.config import Config, load_config


def producer_settings(config: Config, **extra: Any) -> dict[str, Any]:
    """Idempotent, ordered producer: the same key reaches the same partition as Java clients."""
    settings = {
        "bootstrap.servers": config.kafka_bootstrap_servers,
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        "linger.ms": 2,
        "compression.type": "lz4",
        # Long enough that a broker restart delays delivery instead of failing it.
        "delivery.timeout.ms": 10 * 60 * 1000,
        "queue.buffering.max.messages": 500_000,
    }
    settings.update(extra)
    return settings


def make_producer(config: Config, **extra: Any) -> Producer:
    return Producer(producer_settings(config, **extra))


def make_consumer(config: Config, group_id: str | None = None, **extra: Any) -> Consumer:
    settings = {
        "bootstrap.servers": config.kafka_bootstrap_servers,
        "group.id": group_id or config.kafka_consumer_group,
        "enable.auto.offset.store": False,
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 1000,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        # A consumer that dies without leaving its group keeps its partitions until its session times out:
        # at librdkafka's default (45 s) every board it owned would stand still that long after a crash.
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 3_000,
    }
    settings.update(extra)
    return Consumer(settings)


def produce(producer: Producer, topic: str, *, key, value, headers, on_delivery=None) -> None:
    """Produce one message, serving delivery reports while the local queue is full (never dropped)."""
    while True:
        try:
            producer.produce(topic, key=key, value=value, headers=headers, on_delivery=on_delivery)
            break
        except BufferError:
            producer.poll(0.05)  # local queue full: serve delivery reports to make room
    producer.poll(0)


class DeliveryTracker:
    """Counts the delivery reports of a run of `produce` calls (pass it as `on_delivery`)."""

    def __init__(self) -> None:
        self.delivered = 0
        self.failures: list[str] = []

    def __call__(self, err, _msg) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.failures.append(err.str())


def make_admin(config: Config) -> AdminClient:
    return AdminClient({"bootstrap.servers": config.kafka_bootstrap_servers})


def broker_answers(config: Config, timeout_s: float = 2.0) -> bool:
    """True when a metadata request to the broker succeeds."""
    try:
        metadata = make_admin(config).list_topics(timeout=timeout_s)
    except KafkaException:
        return False
    return bool(metadata.brokers)


def ensure_topics(config: Config, timeout_s: float = 30.0) -> list[str]:
    """Create the system's topics when missing (events, scores, changes and their dead letters); returns the
    names created."""
    admin = make_admin(config)
    existing = admin.list_topics(timeout=timeout_s).topics
    wanted = [config.kafka_topic, config.kafka_dlq_topic, config.score_topic, config.score_dlq_topic,
              config.change_topic]
    missing = [name for name in wanted if name not in existing]
    if missing:
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=config.kafka_partitions, replication_factor=1) for name in missing],
            operation_timeout=timeout_s,
        )
        for name, future in futures.items():
            try:
                future.result()
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        topics = admin.list_topics(timeout=timeout_s).topics
        if all(name in topics and not topics[name].error for name in wanted):
            return missing
        time.sleep(0.2)
    raise RuntimeError(f"topics {wanted} did not become available")


def main(argv: list[str]) -> int:
    """`python -m app.kafka wait|topics`: used by the stack scripts."""
    config = load_config()
    command = argv[0] if argv else ""
    if command == "wait":
        deadline = time.monotonic() + float(argv[1] if len(argv) > 1 else 60)
        while time.monotonic() < deadline:
            if broker_answers(config):
                return 0
            time.sleep(0.5)
        print(f"kafka at {config.kafka_bootstrap_servers} did not answer a metadata request", file=sys.stderr)
        return 1
    if command == "topics":
        created = ensure_topics(config)
        print(f"topics created: {', '.join(created)}" if created else "topics already exist")
        return 0
    print("usage: python -m app.kafka wait [SECONDS] | topics", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
