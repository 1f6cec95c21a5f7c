"""Kafka clients built the one way every process uses them."""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from app.core.config import Config, load_config

# How long an operator command's read of Kafka (metadata, watermarks, committed offsets, the next message)
# waits for an answer before it reports that Kafka did not answer: a loaded broker can take many seconds,
# and a command that gave up sooner would count or search wrong.
ANSWER_WAIT_S = 60.0


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


def broker_answers(config: Config, timeout_s: float = 2.0, brokers: int = 1) -> bool:
    """True when a metadata request succeeds and lists at least `brokers` brokers."""
    try:
        metadata = make_admin(config).list_topics(timeout=timeout_s)
    except KafkaException:
        return False
    return len(metadata.brokers) >= max(brokers, 1)


def system_topics(config: Config) -> list[str]:
    """Events, scores, changes and their dead letters."""
    return [config.kafka_topic, config.kafka_dlq_topic, config.score_topic, config.score_dlq_topic,
            config.change_topic]


def ensure_topics(config: Config, timeout_s: float = 30.0, replication_factor: int | None = None,
                  min_insync_replicas: int | None = None) -> list[str]:
    """Create the system's topics when missing; returns the names created. The replication factor and
    min.insync.replicas are the brokers' defaults (`default.replication.factor`, `min.insync.replicas`:
    1 on the single stack, 3 and 2 on the cluster) unless given."""
    admin = make_admin(config)
    existing = admin.list_topics(timeout=timeout_s).topics
    wanted = system_topics(config)
    missing = [name for name in wanted if name not in existing]
    topic_config = {} if min_insync_replicas is None else {"min.insync.replicas": str(min_insync_replicas)}
    if missing:
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=config.kafka_partitions,
                      replication_factor=-1 if replication_factor is None else replication_factor,
                      config=topic_config) for name in missing],
            operation_timeout=timeout_s,
        )
        for future in futures.values():
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


def describe_topics(config: Config, timeout_s: float = 10.0) -> list[str]:
    """One line per system topic: brokers, partitions, replicas and in-sync replicas per partition (the
    distinct counts), min.insync.replicas."""
    admin = make_admin(config)
    metadata = admin.list_topics(timeout=timeout_s)
    names = [name for name in system_topics(config) if name in metadata.topics]
    configs = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, name) for name in names])
    lines = [f"brokers: {','.join(str(b) for b in sorted(metadata.brokers.values(), key=lambda b: b.id))}"]
    for resource, future in sorted(configs.items(), key=lambda item: item[0].name):
        partitions = metadata.topics[resource.name].partitions.values()
        replicas = ",".join(sorted({str(len(p.replicas)) for p in partitions}))
        isrs = ",".join(sorted({str(len(p.isrs)) for p in partitions}))
        min_isr = future.result(timeout=timeout_s)["min.insync.replicas"].value
        lines.append(f"{resource.name}: partitions={len(partitions)} replicas={replicas} isr={isrs} "
                     f"min.insync.replicas={min_isr}")
    return lines


def main(argv: list[str]) -> int:
    """`python -m app.core.kafka wait|topics|describe`: what scripts/stack runs."""
    parser = argparse.ArgumentParser(prog="python -m app.core.kafka")
    commands = parser.add_subparsers(dest="command", required=True)
    wait = commands.add_parser("wait", help="until a metadata request answers")
    wait.add_argument("seconds", nargs="?", type=float, default=60)
    wait.add_argument("--brokers", type=int, default=1, help="least number of brokers the answer lists")
    topics = commands.add_parser("topics", help="create the system's topics when missing")
    topics.add_argument("--replication-factor", type=int,
                        help="default: the brokers' default.replication.factor")
    topics.add_argument("--min-insync-replicas", type=int)
    commands.add_parser("describe", help="brokers; partitions, replicas, min.insync.replicas of the topics")
    args = parser.parse_args(argv)
    config = load_config()
    if args.command == "wait":
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            if broker_answers(config, brokers=args.brokers):
                return 0
            time.sleep(0.5)
        print(f"kafka at {config.kafka_bootstrap_servers} did not answer a metadata request listing "
              f"{args.brokers} broker(s)", file=sys.stderr)
        return 1
    if args.command == "topics":
        created = ensure_topics(config, replication_factor=args.replication_factor,
                                min_insync_replicas=args.min_insync_replicas)
        print(f"topics created: {', '.join(created)}" if created else "topics already exist")
        return 0
    for line in describe_topics(config):
        print(line)
    return 0


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of a key (the Java client's, and librdkafka's `murmur2_random` partitioner's)."""
    length, m = len(data), 0x5BD1E995
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = (int.from_bytes(data[i:i + 4], "little") * m) & 0xFFFFFFFF
        k = ((k ^ (k >> 24)) * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    extra = length % 4
    if extra == 3:
        h ^= data[whole + 2] << 16
    if extra >= 2:
        h ^= data[whole + 1] << 8
    if extra >= 1:
        h = ((h ^ data[whole]) * m) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * m) & 0xFFFFFFFF
    return h ^ (h >> 15)


def partition_of(key: bytes, partitions: int) -> int:
    """The partition the producers (`producer_settings`) send `key` to, of a topic of `partitions`."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
