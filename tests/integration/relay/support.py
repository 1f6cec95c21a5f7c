"""What the relay tests share: the outbox written by hand, Kafka read back whole, relays built in the test's
process or run as processes of their own (`RelayProcess`), and the WAL positions of wal mode."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from sqlalchemy import text

from app.core.config import Config
from app.core.kafka import make_producer
from app.core.outbox import capture_slot, engine_slot_name
from outbox_relay.capture import WalRelay
from outbox_relay.pgoutput import lsn_to_int
from outbox_relay.process import build_relay
from outbox_relay.relay import Relay
from outbox_relay.slot_stream import StreamingWalRelay
from tests.helpers import WAIT_S, stack_env, wait_until

ROOT = Path(__file__).resolve().parents[3]

# What every relay promises, in each mode and each way the wal relay reads its slot ("wal+stream": over the
# replication protocol, whatever RELAY_WAL_READ the run has).
BOTH_MODES = pytest.mark.parametrize("relay_mode", ["poll", "wal", "wal+stream"], indirect=True)


def wal_head(engine) -> int:
    """The WAL flush position now: every transaction committed before the call ends before it."""
    with engine.connect() as conn:
        return lsn_to_int(conn.execute(text("SELECT pg_current_wal_flush_lsn()::text")).scalar())


def slot_confirmed(engine) -> int:
    status = capture_slot(engine)
    return lsn_to_int(status.confirmed_flush_lsn) if status and status.confirmed_flush_lsn else 0


def skip_slot_to_now(engine) -> None:
    """Create the test database's slot if missing and advance it to the present (waiting while a relay
    process of an earlier test is still reading it), its backfill done."""
    slot = engine_slot_name(engine)

    def skipped() -> bool:
        with engine.connect() as conn:
            try:
                if conn.execute(text("SELECT count(*) FROM pg_replication_slots WHERE slot_name = :s"),
                                {"s": slot}).scalar() == 0:
                    conn.commit()
                    conn.execute(text("SELECT pg_create_logical_replication_slot(:s, 'pgoutput')"),
                                 {"s": slot})
                    conn.commit()
                conn.execute(text("SELECT pg_replication_slot_advance(:s, pg_current_wal_flush_lsn())"),
                             {"s": slot})
                conn.commit()
                # Its backfill counts as done: what earlier tests left unmarked is not published again.
                conn.execute(text("INSERT INTO outbox_capture (slot_name, caught_up_at) VALUES (:s, now()) "
                                  "ON CONFLICT (slot_name) DO NOTHING"), {"s": slot})
                conn.commit()
                return True
            except Exception as exc:  # noqa: BLE001 - "is active for PID": an earlier test's relay
                if "is active" not in str(exc):
                    raise
                return False

    wait_until(skipped, "the slot stayed in use by an earlier relay")


def all_published(engine, ids: list[str], mode: str, mark: int) -> bool:
    """poll: every row of `ids` marked; wal: the slot passed `mark` (a head taken after their commit)."""
    if mode == "wal":
        return slot_confirmed(engine) >= mark
    return unpublished_among(engine, ids) == 0


@dataclass
class Message:
    key: bytes
    value: bytes
    headers: dict[str, bytes]
    partition: int
    offset: int
    timestamp_ms: int = 0  # when the relay produced it (CreateTime)

    @property
    def event_id(self) -> str:
        return self.headers["event_id"].decode()


def insert_events(engine, count: int, sessions: list[uuid.UUID] | None = None) -> list[str]:
    """`count` valid `session_ended` events spread over `sessions`, in one transaction; returns their ids."""
    sessions = sessions or [uuid.uuid4() for _ in range(8)]
    with engine.begin() as conn:
        rows = conn.execute(text("""
            INSERT INTO events (id, aggregate_type, aggregate_id, event_type, version, payload)
            SELECT gen_random_uuid(), 'quiz_session',
                   (CAST(:sessions AS uuid[]))[1 + g % cardinality(CAST(:sessions AS uuid[]))],
                   'session_ended', 1, jsonb_build_object('ended_at', clock_timestamp())
            FROM generate_series(1, :n) AS g
            RETURNING id"""), {"sessions": [str(s) for s in sessions], "n": count}).all()
    return [str(r.id) for r in rows]


class SteadyWrites:
    """Events written in batches of 20 on a thread of their own until stopped (an outage test's load);
    `ids` holds what was written so far."""

    def __init__(self, engine) -> None:
        self.ids: list[str] = []
        self._writing = threading.Event()
        self._writing.set()
        self._thread = threading.Thread(target=self._write, args=(engine,), daemon=True)
        self._thread.start()

    def _write(self, engine) -> None:
        while self._writing.is_set():
            self.ids.extend(insert_events(engine, 20))
            time.sleep(0.01)

    def stop(self) -> None:
        self._writing.clear()
        self._thread.join(10)


def unpublished_among(engine, ids: list[str]) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM events WHERE id = ANY(CAST(:ids AS uuid[])) "
                                 "AND published_at IS NULL"), {"ids": ids}).scalar()


def wait_published(engine, ids: list[str], mode: str = "poll") -> None:
    """Wait until the events `ids` (committed before the call) are published in this mode."""
    mark = wal_head(engine) if mode == "wal" else 0
    wait_until(lambda: all_published(engine, ids, mode, mark), f"{len(ids)} events were not published")


def read_topic(bootstrap: str, topic: str, timeout_s: float = WAIT_S,
               since: dict[int, int] | None = None) -> list[Message]:
    """Every message now on `topic` (or after the offsets `since`, by partition: what was added since
    `topic_ends` took them), read with a fresh group up to the high watermarks taken first."""
    since = since or {}
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-relay-" + uuid.uuid4().hex,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=WAIT_S).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=WAIT_S)[1]
                for p in partitions}
        consumer.assign([TopicPartition(topic, p, since.get(p, OFFSET_BEGINNING)) for p in partitions])
        done = {p for p, end in ends.items() if end <= since.get(p, 0)}
        messages: list[Message] = []
        deadline = time.monotonic() + timeout_s
        while len(done) < len(ends):
            assert time.monotonic() < deadline, f"could not read {topic} to its end within {timeout_s} s"
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            messages.append(Message(msg.key(), msg.value(), dict(msg.headers() or []), msg.partition(),
                                    msg.offset(), msg.timestamp()[1]))
            if msg.offset() + 1 >= ends[msg.partition()]:
                done.add(msg.partition())
        return messages
    finally:
        consumer.close()


def topic_ends(consumer: Consumer, topic: str) -> dict[int, int]:
    """The high watermark of each partition of `topic` now: where what is produced next will be."""
    partitions = consumer.list_topics(topic, timeout=WAIT_S).topics[topic].partitions
    return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=WAIT_S, cached=False)[1]
            for p in partitions}


def by_event_id(messages: list[Message]) -> dict[str, list[Message]]:
    found: dict[str, list[Message]] = defaultdict(list)
    for m in messages:
        found[m.event_id].append(m)
    return found


def make_relay(config: Config, engine, *, leader_lock: bool = False, batch_size: int = 500,
               bootstrap: str | None = None) -> Relay:
    """A relay built the way the process builds it, on the test's database and topics."""
    relay_config = config.replace(relay_batch_size=batch_size, relay_poll_interval_s=0.5,
                                  relay_retention_hours=24,
                                  kafka_bootstrap_servers=bootstrap or config.kafka_bootstrap_servers)
    relay = build_relay(relay_config, leader_lock=leader_lock, serve_metrics=False)
    assert relay.mode == config.relay_mode
    assert relay.engine.url == engine.url  # the test's own database
    return relay


class RunningRelay:
    """`Relay.run()` on a thread, as the process runs it."""

    def __init__(self, relay: Relay):
        self.relay = relay
        self.thread = threading.Thread(target=relay.run, name="relay", daemon=True)
        self.thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self.relay.signal_shutdown()
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "relay did not stop"


def relay_env(config: Config, **extra) -> dict[str, str]:
    """The relay's environment; its info lines (leadership, the stop summary) are asserted on."""
    return stack_env(config, LOG_LEVEL="info", **{k: str(v) for k, v in extra.items()})


class RelayProcess:
    """`python -m outbox_relay` as a subprocess, its stderr collected on a thread."""

    def __init__(self, env: dict[str, str]):
        self.lines: list[str] = []
        self.proc = subprocess.Popen([sys.executable, "-m", "outbox_relay"], cwd=ROOT, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def logged(self, fragment: str) -> bool:
        return any(fragment in line for line in list(self.lines))

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            pytest.fail(f"relay did not exit within {timeout_s} s; last lines: {self.lines[-10:]}")

    def kill_if_running(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class FailingProducer:
    """A real producer that reports the messages `fails(event_id)` picks as failed (a delivery timeout)."""

    def __init__(self, producer, fails: Callable[[str], bool]):
        self.producer, self.fails, self.failed_ids = producer, fails, []

    def produce(self, topic, value, key, headers, on_delivery):
        event_id = dict(headers)["event_id"].decode()
        if self.fails(event_id):
            self.failed_ids.append(event_id)
            on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT), None)
        else:
            self.producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)

    def poll(self, timeout):
        return self.producer.poll(timeout)

    def flush(self, timeout):
        return self.producer.flush(timeout)


WAL = pytest.mark.parametrize("relay_mode", ["wal"], indirect=True)


def wal_relay(config, engine, producer=None, **kwargs) -> WalRelay:
    """A wal-mode relay reading its slot as RELAY_WAL_READ says (a peek per batch, or the stream)."""
    relay_class = StreamingWalRelay if config.relay_wal_read == "stream" else WalRelay
    return relay_class(engine, producer or make_producer(config), config.kafka_topic, leader_lock=False,
                       **kwargs)


def drain(relay) -> None:
    while relay.relay_batch().claimed:
        pass
