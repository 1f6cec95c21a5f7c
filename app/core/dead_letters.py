"""Dead letters: the one owner of their shape (original key, value and headers, plus the reason in a
header), written by the consumers (app/core/batch_consumer.py: the cache worker's events, the score
ingest's scores) and read back by the operator CLI (`ops dlq`) and `ops verify`.

A dead letter is a message that can never be applied as it is (undecodable, an unknown type, refused
by Redis; app/core/poison.py says which failures are a message's). It keeps its original key, value and
headers, so `ops dlq redrive` can send it back to the main topic unchanged once its cause is fixed;
which entries were redriven is recorded as the committed offsets of a consumer group of its own, so a
redrive never sends one twice. Two exceptions: headers the Kafka client cannot read (a name that is not
UTF-8) are left out, and a message too large for the dead-letter topic keeps only the first CUT_BYTES of
its key and value and none of its headers; the reason says so, and such a copy never decodes again.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from app.core.config import Config
from app.core.kafka import ANSWER_WAIT_S, make_consumer
from app.core.poison import store_unavailable
from app.core.retry import Backoff

REASON_HEADER = "dlq_reason"

T = TypeVar("T")


# What a dead letter the broker refuses as too large keeps of its key and of its value.
CUT_BYTES = 1024


def dead_letter_headers(headers: list[tuple[str, bytes]] | None, reason: str) -> list[tuple[str, bytes]]:
    """The headers of the dead-letter copy of a message: its own, and why it could not be applied (one
    reason: a `dlq_reason` the message came with is not kept)."""
    return [(name, raw) for name, raw in headers or [] if name != REASON_HEADER] + [
        (REASON_HEADER, reason.encode("utf-8", "backslashreplace"))]


@dataclass(frozen=True)
class Outgoing:
    """The dead-letter copy of a message, on its way to the dead-letter topic."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    reason: str
    cut: bool = False

    def cut_to_fit(self) -> Outgoing:
        """The copy a broker takes whatever the size of the original: the first CUT_BYTES of its key and
        value, none of its headers, and a reason that says what was cut."""
        sizes = f"key {len(self.key or b'')} B, value {len(self.value or b'')} B"
        return Outgoing(self.key[:CUT_BYTES] if self.key else self.key,
                        self.value[:CUT_BYTES] if self.value else self.value, [],
                        f"{self.reason} (too large for the dead-letter topic: {sizes}, "
                        f"cut to {CUT_BYTES} B each, headers left out)", cut=True)


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    def header(self, name: str) -> str | None:
        for header_name, raw in self.headers:
            if header_name == name and raw is not None:
                return raw.decode("utf-8", "backslashreplace")
        return None

    @property
    def reason(self) -> str:
        return self.header(REASON_HEADER) or "-"

    @property
    def event_id(self) -> str | None:
        return self.header("event_id")

    @property
    def event_type(self) -> str | None:
        return self.header("event_type")

    @property
    def aggregate_id(self) -> str | None:
        """The message key: the session (or board) the dead letter belongs to."""
        return self.key.decode("utf-8", "backslashreplace") if self.key is not None else None

    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(name, raw) for name, raw in self.headers if name != REASON_HEADER]


@dataclass(frozen=True)
class DeadLetterCounts:
    total: int
    pending: int


@dataclass
class TopicState:
    partitions: list[int]
    watermarks: dict[int, tuple[int, int]]
    committed: dict[int, int]  # next offset to redrive, per partition (the low watermark if none)


class ReadStalled(RuntimeError):
    """Reading the dead-letter topic made no progress for ANSWER_WAIT_S."""


@dataclass(frozen=True)
class DeadLetterQueue:
    """A consumer's dead letters: the topic they came from, the one they are kept in, and the consumer
    group whose committed offsets mark those `dlq redrive` has handled."""

    name: str
    topic: str
    dlq_topic: str
    redrive_group: str


EVENTS, SCORES = "events", "scores"


def dead_letter_queues(config: Config) -> dict[str, DeadLetterQueue]:
    """The cache worker's (events) and the score ingest's (scores)."""
    return {EVENTS: DeadLetterQueue(EVENTS, config.kafka_topic, config.kafka_dlq_topic,
                                    f"{config.kafka_consumer_group}.dlq-redrive"),
            SCORES: DeadLetterQueue(SCORES, config.score_topic, config.score_dlq_topic,
                                    f"{config.score_consumer_group}.dlq-redrive")}


def redrive_consumer(config: Config, queue: DeadLetterQueue):
    # Offsets are committed by hand, and only by `dlq redrive`; `assign` never joins the group.
    return make_consumer(config, group_id=queue.redrive_group, **{"enable.auto.commit": False})


def topic_state(consumer, topic: str, wait_s: float = ANSWER_WAIT_S) -> TopicState | None:
    """The partitions of `topic`, their watermarks and the offsets the consumer's group committed there;
    None when there is no such topic. Kafka is asked again while it answers with a passing error (a request
    timed out, a leader or the group's coordinator being elected or loading) until `wait_s` has passed,
    then that error is raised: a state is never made up from part of an answer."""
    deadline = time.monotonic() + wait_s
    backoff = Backoff(first_s=0.1, cap_s=2.0)
    while True:
        try:
            return _topic_state(consumer, topic, lambda: max(deadline - time.monotonic(), 0.1))
        except KafkaException as exc:
            delay = backoff.next_delay()
            if not store_unavailable(exc) or time.monotonic() + delay >= deadline:
                raise
            time.sleep(delay)


def _unknown_topic(error: KafkaError | None) -> bool:
    return error is not None and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def _answered(value: T, error: KafkaError | None) -> T:
    """`value`, unless Kafka answered it with `error`."""
    if error is not None:
        raise KafkaException(error)
    return value


def _topic_state(consumer, topic: str, left: Callable[[], float]) -> TopicState | None:
    metadata = consumer.list_topics(topic, timeout=left()).topics.get(topic)
    if metadata is None or _unknown_topic(metadata.error):
        return None
    partitions = sorted(_answered(metadata.partitions, metadata.error))
    for partition in metadata.partitions.values():  # one without a leader has no watermarks yet
        _answered(partition, partition.error)
    watermarks = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=left(), cached=False)
                  for p in partitions}
    committed = {}
    for position in consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=left()):
        # A partition's error (its coordinator loading, say) is no "nothing committed": ask again.
        _answered(position, position.error)
        low, high = watermarks[position.partition]
        committed[position.partition] = min(max(position.offset, low), high) if position.offset >= 0 else low
    return TopicState(partitions, watermarks, committed)


def dead_letter_counts(config: Config, queue: DeadLetterQueue) -> DeadLetterCounts:
    """Messages in the dead-letter topic (high - low watermarks) and those `dlq redrive` has not handled."""
    consumer = redrive_consumer(config, queue)
    try:
        state = topic_state(consumer, queue.dlq_topic)
    finally:
        consumer.close()
    if state is None:
        return DeadLetterCounts(0, 0)
    total = sum(high - low for low, high in state.watermarks.values())
    pending = sum(state.watermarks[p][1] - state.committed[p] for p in state.partitions)
    return DeadLetterCounts(total, pending)


def read_dead_letters(consumer, topic: str, start: dict[int, int], end: dict[int, int]) -> list[DeadLetter]:
    """Messages of `topic` from `start` up to (not including) `end`, per partition, in offset order."""
    todo = {p for p in start if start[p] < end[p]}
    if not todo:
        return []
    consumer.assign([TopicPartition(topic, p, start[p] if start[p] >= 0 else OFFSET_BEGINNING) for p in todo])
    letters: list[DeadLetter] = []
    stalled_since = time.monotonic()
    while todo:
        messages = consumer.consume(num_messages=500, timeout=1.0)
        for message in messages:
            if message.error() is not None:
                # A broker unreachable for a while is the client's to retry; the stall bound covers it.
                if message.error().code() != KafkaError._PARTITION_EOF \
                        and not store_unavailable(KafkaException(message.error())):
                    raise KafkaException(message.error())
                continue
            partition = message.partition()
            if partition in todo and message.offset() < end[partition]:
                letters.append(DeadLetter(partition, message.offset(), message.key(), message.value(),
                                          list(message.headers() or [])))
            if message.offset() >= end[partition] - 1:
                todo.discard(partition)
        for position in consumer.position([TopicPartition(topic, p) for p in list(todo)]):
            if position.offset >= end[position.partition]:  # the tail was deleted or is a gap
                todo.discard(position.partition)
        if messages:
            stalled_since = time.monotonic()
        elif time.monotonic() - stalled_since > ANSWER_WAIT_S:
            raise ReadStalled(f"reading {topic} stalled with partitions {sorted(todo)} unread")
    return sorted(letters, key=lambda letter: (letter.partition, letter.offset))


def commit_redriven(consumer, topic: str, state: TopicState, letters: list[DeadLetter],
                    handled: list[DeadLetter], everything: bool) -> None:
    """Move each partition's committed offset past the entries handled, as far as they are contiguous."""
    done = {(letter.partition, letter.offset) for letter in handled}
    offsets = []
    for partition in state.partitions:
        next_offset = state.committed[partition]
        if everything:
            next_offset = state.watermarks[partition][1]
        else:
            for letter in (letter for letter in letters if letter.partition == partition):
                if letter.offset < next_offset:
                    continue
                if (partition, letter.offset) not in done:
                    break
                next_offset = letter.offset + 1
        if next_offset != state.committed[partition]:
            offsets.append(TopicPartition(topic, partition, next_offset))
    if offsets:
        consumer.commit(offsets=offsets, asynchronous=False)
