"""Helpers of the consumers' poison tests (no tests here): malformed messages from a seeded generator
(what a hostile or broken producer can put on a topic), a raw producer for what the Python client
cannot send (header names that are not UTF-8), and the dead letters read back.

`POISON_SEED` picks another batch of the same kinds; the default keeps runs reproducible.
"""
from __future__ import annotations

import ctypes
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import confluent_kafka
from confluent_kafka import TopicPartition

from app.core.kafka import make_consumer, make_producer
from tests.helpers import WAIT_S, wait_until
from tests.integration.relay.support import read_topic

SEED = int(os.environ.get("POISON_SEED", "20251"))
# Nested far past Python's recursion limit: what stopped the score ingest for good.
VERY_DEEP = 100_000
# A value this long (with a key of up to 64 bytes) makes a message the producer takes, but whose
# dead-letter copy, with its reason header, is over the client's 1,000,000-byte message limit.
NEAR_LIMIT = 999_900


@dataclass(frozen=True)
class Raw:
    """One message as produced: `kind` says what is wrong with it."""

    kind: str
    value: bytes | None
    key: bytes | None = None
    headers: list[tuple[bytes, bytes | None]] = field(default_factory=list)  # names as bytes

    @property
    def needs_raw_producer(self) -> bool:
        return any(not _is_utf8(name) for name, _ in self.headers)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode()
        return True
    except UnicodeDecodeError:
        return False


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()  # allow_nan: NaN and Infinity go out as the bare tokens


def nested(depth: int, closed: bool = True) -> bytes:
    return b"[" * depth + (b"]" * depth if closed else b"")


def near_limit(valid: dict[str, Any], name: str) -> bytes:
    """`valid` with `name` padded so the value is NEAR_LIMIT bytes long."""
    return dumps({**valid, name: "x" * (NEAR_LIMIT - len(dumps({**valid, name: ""})))})


def malformed_values(rng: random.Random, valid: dict[str, Any], fields: list[str], near_limit_field: str,
                     ) -> list[tuple[str, bytes | None]]:
    """Values that no consumer can take, built around `valid` (a message it takes): each of `fields`
    missing, null and of the wrong type, and the shapes every JSON decoder must survive."""
    values: list[tuple[str, bytes | None]] = [
        ("tombstone", None), ("empty", b""), ("very deep", nested(VERY_DEEP)),
        ("very deep, unclosed", nested(VERY_DEEP, closed=False)), ("33 deep", nested(33)),
        ("deep object", b'{"a":' * 5000 + b"1" + b"}" * 5000),
        ("deep inside", dumps({**valid, "metadata": {"a": json.loads(nested(40))}})),
        ("near the size limit", near_limit(valid, near_limit_field)),
        ("huge string", dumps({**valid, fields[0]: "y" * 200_000})),
        ("huge integer", dumps({**valid, fields[-1]: 2 ** 64})),
        ("huge negative integer", dumps({**valid, fields[-1]: -(2 ** 80)})),
        ("integer of 5000 digits", dumps(valid)[:-1] + b', "big": ' + b"9" * 5000 + b"}"),
        ("float overflow", dumps(valid)[:-1] + b', "version": 1e400, "score": 1e400}'),
        ("NaN", dumps({**valid, fields[-1]: float("nan")})),
        ("Infinity", dumps({**valid, fields[-1]: float("inf")})),
        ("NUL in text", dumps({**valid, fields[0]: "a\x00b"})),
        ("lone surrogate", dumps({**valid, fields[0]: "\ud800"})),
        ("bad UTF-8 in a string", dumps({**valid, fields[0]: "@"}).replace(b"@", b"\xff\xfe")),
        ("not an object", dumps([valid])), ("a string", dumps("text")), ("a number", b"42"),
        ("true", b"true"),
        ("null", b"null"), ("truncated", dumps(valid)[:-3]), ("trailing garbage", dumps(valid) + b"}{"),
    ]
    for name in fields:
        values.append((f"{name} missing", dumps({k: v for k, v in valid.items() if k != name})))
        values.append((f"{name} null", dumps({**valid, name: None})))
        wrong = rng.choice([[1, 2], {"x": 1}, True, 1.5, "12", 10 ** 30])
        if type(wrong) is not type(valid[name]):
            values.append((f"{name} of the wrong type", dumps({**valid, name: wrong})))
    for i in range(4):
        values.append((f"random bytes {i}", bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 3000)))))
    return values


def with_bad_keys_and_headers(rng: random.Random, poison: bytes, key: bytes) -> list[Raw]:
    """A poison value under keys and headers a consumer must pass through to its dead letter as they are."""
    return [
        Raw("key not UTF-8", poison, key=b"\xff\xfe" + bytes(rng.getrandbits(8) for _ in range(16))),
        Raw("huge key", poison, key=b"k" * 100_000),
        Raw("header name not UTF-8", poison, key=key, headers=[(b"\xff\xfename", b"v"), (b"event_id", b"x")]),
        Raw("header without a value", poison, key=key, headers=[(b"event_id", None)]),
        Raw("many headers", poison, key=key, headers=[(b"h", b"\xff" * 10)] * 200),
    ]


class RawProducer:
    """librdkafka's own producer (the one the confluent-kafka wheel bundles), called through ctypes: it
    sends header names as the bytes given, which the Python client cannot (it takes names as str), as a
    Java or Go client can."""

    _TOPIC, _VALUE, _KEY, _MSGFLAGS, _HEADERS, _END = 1, 4, 5, 7, 10, 0
    _F_COPY = 2

    def __init__(self, bootstrap: str):
        libs = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
        lib = ctypes.CDLL(str(next(libs.glob("librdkafka*.so*"))))
        lib.rd_kafka_conf_new.restype = ctypes.c_void_p
        lib.rd_kafka_conf_set.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                          ctypes.c_size_t]
        lib.rd_kafka_new.restype = ctypes.c_void_p
        lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.rd_kafka_headers_new.restype = ctypes.c_void_p
        lib.rd_kafka_headers_new.argtypes = [ctypes.c_size_t]
        lib.rd_kafka_header_add.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_ssize_t,
                                            ctypes.c_char_p, ctypes.c_ssize_t]
        lib.rd_kafka_flush.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.rd_kafka_outq_len.argtypes = [ctypes.c_void_p]
        lib.rd_kafka_destroy.argtypes = [ctypes.c_void_p]
        self.lib = lib
        conf = lib.rd_kafka_conf_new()
        error = ctypes.create_string_buffer(512)
        assert lib.rd_kafka_conf_set(conf, b"bootstrap.servers", bootstrap.encode(), error,
                                     512) == 0, error.value
        self.handle = lib.rd_kafka_new(0, conf, error, 512)
        assert self.handle, error.value

    def produce(self, topic: str, message: Raw) -> None:
        headers = self.lib.rd_kafka_headers_new(len(message.headers))
        for name, value in message.headers:
            assert self.lib.rd_kafka_header_add(headers, name, len(name), value, len(value or b"")) == 0
        args: list[Any] = [ctypes.c_void_p(self.handle), ctypes.c_int(self._TOPIC),
                           ctypes.c_char_p(topic.encode()),
                           ctypes.c_int(self._MSGFLAGS), ctypes.c_int(self._F_COPY),
                           ctypes.c_int(self._HEADERS), ctypes.c_void_p(headers)]
        if message.value is not None:
            args += [ctypes.c_int(self._VALUE), ctypes.c_char_p(message.value),
                     ctypes.c_size_t(len(message.value))]
        if message.key is not None:
            args += [ctypes.c_int(self._KEY), ctypes.c_char_p(message.key), ctypes.c_size_t(len(message.key))]
        assert self.lib.rd_kafka_producev(*args,
                                          ctypes.c_int(self._END)) == 0, "librdkafka refused the message"

    def flush(self) -> None:
        assert (self.lib.rd_kafka_flush(self.handle, int(WAIT_S * 1000)) == 0
                and self.lib.rd_kafka_outq_len(self.handle) == 0)

    def close(self) -> None:
        self.lib.rd_kafka_destroy(self.handle)


def produce_all(config, topic: str, messages: list[Raw]) -> int:
    """Every message to `topic`: through the Python client, or the raw producer for header names it
    cannot send. Returns how many."""
    producer = make_producer(config)
    raw = [m for m in messages if m.needs_raw_producer]
    for message in messages:
        if not message.needs_raw_producer:
            headers = [(name.decode(), value) for name, value in message.headers]
            producer.produce(topic, key=message.key, value=message.value, headers=headers)
            producer.poll(0)
    assert producer.flush(WAIT_S) == 0
    if raw:
        sender = RawProducer(config.kafka_bootstrap_servers)
        try:
            for message in raw:
                sender.produce(topic, message)
            sender.flush()
        finally:
            sender.close()
    return len(messages)


def topic_size(config, topic: str) -> int:
    """Messages on `topic` (the sum of its partitions' high watermarks; nothing is deleted in a test)."""
    consumer = make_consumer(config, group_id="poison-size")
    try:
        partitions = consumer.list_topics(topic, timeout=WAIT_S).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=WAIT_S, cached=False)[1]
                   for p in partitions)
    finally:
        consumer.close()


def dead_letters(config, topic: str, count: int, alive=lambda: True) -> list:
    """The dead letters on `topic` once there are `count` of them (read_topic's messages); `alive` fails
    the wait early when the consumer has died."""
    wait_until(lambda: alive() and topic_size(config, topic) >= count,
               f"fewer than {count} dead letters on {topic}", every_s=0.5)
    return read_topic(config.kafka_bootstrap_servers, topic)


def assert_each_dead_lettered(letters: list, sent: list[Raw]) -> list[str]:
    """Each message of `sent` is on the dead-letter topic once, with its key and value (a copy cut to fit
    keeps their first bytes) and a reason; returns the reasons."""
    assert len(letters) == len(sent), (len(letters), len(sent))
    unmatched = list(sent)
    for letter in letters:
        reason = letter.headers["dlq_reason"].decode()
        assert ": " in reason, reason
        match = next((m for m in unmatched if _copies(m, letter,
                                                      cut="too large for the dead-letter topic" in reason)),
                     None)
        assert match is not None, f"a dead letter of no message sent: {reason}"
        unmatched.remove(match)
    return [letter.headers["dlq_reason"].decode() for letter in letters]


def _copies(sent: Raw, letter, *, cut: bool) -> bool:
    if not cut:
        return (sent.key, sent.value) == (letter.key, letter.value)
    from app.core.dead_letters import CUT_BYTES

    return ((sent.key or b"")[:CUT_BYTES], (sent.value or b"")[:CUT_BYTES]) == (
        letter.key or b"", letter.value or b"")
