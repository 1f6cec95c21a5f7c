"""The outbox relay against the real PostgreSQL and Kafka: completeness, order, crashes, outages.

The tests of what both relay modes promise run in both (`relay_mode`, parametrized indirectly: the
test's `relay_config` carries RELAY_MODE, so relays built here and relay processes get it). In poll mode
"published" means marked; in wal mode it means the slot's confirmed position passed the transaction,
which the relay only advances after Kafka acknowledged every event of it. Each test starts from a
clean state of its mode: wal mode skips the slot to the present (what earlier tests wrote is not
re-read), poll mode marks what earlier wal-mode tests left unmarked.
"""
from __future__ import annotations

import itertools
import logging
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Callable

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.core.config import Config
from app.core.kafka import ensure_topics, make_producer
from app.core.outbox import capture_slot, drop_slots_of_database, engine_slot_name, outbox_lag
from outbox_relay import partitions
from outbox_relay.capture import WalRelay
from outbox_relay.pgoutput import lsn_to_int
from outbox_relay.process import build_relay
from outbox_relay.poll import PollRelay
from outbox_relay.relay import Relay
from tests.events import EVENTS
from tests.helpers import Api, sample_questions, stack_env, wait_until
from tests.kafka_broker import PrivateKafka

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("kafka_topics")


BOTH_MODES = pytest.mark.parametrize("relay_mode", ["poll", "wal"], indirect=True)


# --- helpers ---------------------------------------------------------------------------------------

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
                    conn.execute(text("SELECT pg_create_logical_replication_slot(:s, 'pgoutput')"), {"s": slot})
                    conn.commit()
                conn.execute(text("SELECT pg_replication_slot_advance(:s, pg_current_wal_flush_lsn())"), {"s": slot})
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


@pytest.fixture()
def relay_mode(request, engine) -> str:
    """poll unless a test is parametrized with BOTH_MODES; the test starts from a clean outbox of its mode."""
    mode = getattr(request, "param", "poll")
    if mode == "wal":
        skip_slot_to_now(engine)
    else:
        with engine.begin() as conn:
            conn.execute(text("UPDATE events SET published_at = now() WHERE published_at IS NULL"))
    return mode


@pytest.fixture(scope="module")
def relay_topic(kafka_topics: Config) -> str:
    """The relay tests' own topic: their hundreds of thousands of events of made-up sessions stay out of
    the topic the end-to-end stack's worker consumes."""
    own = kafka_topics.replace(kafka_topic=kafka_topics.kafka_topic + ".relay")
    ensure_topics(own)
    return own.kafka_topic


@pytest.fixture()
def relay_config(config: Config, relay_mode: str, relay_topic: str) -> Config:
    """The test's configuration with RELAY_MODE set (tests of both modes bind it to `config`)."""
    return config.replace(relay_mode=relay_mode, kafka_topic=relay_topic)


@pytest.fixture(autouse=True)
def _clean_outbox(relay_mode: str) -> None:
    """Every test of the module starts from its mode's clean state (see `relay_mode`)."""


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
            SELECT gen_random_uuid(), 'quiz_session', (CAST(:sessions AS uuid[]))[1 + g % cardinality(CAST(:sessions AS uuid[]))],
                   'session_ended', 1, jsonb_build_object('ended_at', clock_timestamp())
            FROM generate_series(1, :n) AS g
            RETURNING id"""), {"sessions": [str(s) for s in sessions], "n": count}).all()
    return [str(r.id) for r in rows]


def unpublished_among(engine, ids: list[str]) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM events WHERE id = ANY(CAST(:ids AS uuid[])) "
                                 "AND published_at IS NULL"), {"ids": ids}).scalar()


def wait_published(engine, ids: list[str], mode: str = "poll") -> None:
    """Wait until the events `ids` (committed before the call) are published in this mode."""
    mark = wal_head(engine) if mode == "wal" else 0
    wait_until(lambda: all_published(engine, ids, mode, mark), f"{len(ids)} events were not published")


def read_topic(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[Message]:
    """Every message now on `topic`, read with a fresh group up to the high watermarks taken first."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-relay-" + uuid.uuid4().hex,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        done = {p for p, end in ends.items() if end == 0}
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


def by_event_id(messages: list[Message]) -> dict[str, list[Message]]:
    found: dict[str, list[Message]] = defaultdict(list)
    for m in messages:
        found[m.event_id].append(m)
    return found


def make_relay(config: Config, engine, *, leader_lock: bool = False, batch_size: int = 500,
               bootstrap: str | None = None) -> Relay:
    """A relay built the way the process builds it, on the test's database and topics."""
    relay_config = config.replace(relay_batch_size=batch_size, relay_poll_interval_s=0.5, relay_retention_hours=24,
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


# --- completeness, key and order -------------------------------------------------------------------

@BOTH_MODES
def test_a_burst_of_answers_reaches_kafka_once_each_keyed_and_in_session_order(app, api: Api, relay_config, engine):
    config = relay_config
    host = api.host()
    sessions = [api.live_session(host, sample_questions(2)) for _ in range(3)]
    players = {s["id"]: [api.join(s["id"], api.guest()) for _ in range(30)] for s in sessions}
    running = RunningRelay(make_relay(config, engine, leader_lock=True, batch_size=50))
    try:
        def answer(job):
            session_id, player, question_id = job
            Api(app.test_client()).answer(session_id, player, question_id, hash(player.user_id) % 4)

        with ThreadPoolExecutor(max_workers=24) as pool:
            for _ in range(2):
                jobs = []
                for s in sessions:
                    opened = api.next_question(s["id"], host)
                    jobs += [(s["id"], p, opened["question_id"]) for p in players[s["id"]]]
                list(pool.map(answer, jobs))
                for s in sessions:
                    api.close_question(s["id"], host)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, aggregate_id, event_type FROM events WHERE aggregate_id = ANY(:s) "
                                     "ORDER BY created_at, seq"), {"s": [s["id"] for s in sessions]}).all()
        ids = [str(r.id) for r in rows]
        assert sum(r.event_type == "answer_scored" for r in rows) == 3 * 30 * 2
        wait_published(engine, ids, config.relay_mode)
    finally:
        running.stop()

    found = by_event_id(read_topic(config.kafka_bootstrap_servers, config.kafka_topic))
    for row in rows:
        copies = found[str(row.id)]
        assert len(copies) == 1, f"{row.id} published {len(copies)} times"
        message = copies[0]
        envelope = EVENTS.decode(message.value)
        assert message.key == row.aggregate_id.encode() and envelope.aggregate_id == row.aggregate_id
        assert message.headers["event_type"].decode() == envelope.event_type == row.event_type
        assert str(envelope.event_id) == str(row.id)
    for s in sessions:
        in_db = [r for r in rows if str(r.aggregate_id) == s["id"]]
        on_topic = sorted((found[str(r.id)][0] for r in in_db), key=lambda m: m.offset)
        assert len({m.partition for m in on_topic}) == 1
        published = [m.event_id for m in on_topic]
        # Events whose transactions conflict (join, open, close) keep exactly their commit order, and every
        # answer lands between the opening and the closing of its question.
        assert [e for e in published if e in _barriers(in_db)] == [str(r.id) for r in in_db if _is_barrier(r)]
        assert _segments(published, in_db) == _segments([str(r.id) for r in in_db], in_db)


def _is_barrier(row) -> bool:
    return row.event_type != "answer_scored"


def _barriers(rows) -> set[str]:
    return {str(r.id) for r in rows if _is_barrier(r)}


def _segments(order: list[str], rows) -> list[tuple[str, frozenset[str]]]:
    """Each barrier event with the set of answers published after it and before the next barrier."""
    barriers = _barriers(rows)
    segments: list[tuple[str, set[str]]] = []
    for event_id in order:
        if event_id in barriers:
            segments.append((event_id, set()))
        else:
            segments[-1][1].add(event_id)
    return [(b, frozenset(a)) for b, a in segments]


@BOTH_MODES
def test_order_of_a_backlog_follows_creation_within_each_session(relay_config, engine):
    config = relay_config
    sessions = [uuid.uuid4() for _ in range(5)]
    ids = []
    for _ in range(4):  # several transactions interleaving the sessions
        ids += insert_events(engine, 250, sessions)
    mark = wal_head(engine)
    relay = make_relay(config, engine, batch_size=37)
    try:
        while relay.relay_batch().claimed:
            pass
    finally:
        relay.close()
    assert all_published(engine, ids, config.relay_mode, mark)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, aggregate_id FROM events WHERE id = ANY(CAST(:ids AS uuid[])) "
                                 "ORDER BY created_at, seq"), {"ids": ids}).all()
    found = by_event_id(read_topic(config.kafka_bootstrap_servers, config.kafka_topic))
    for session in sessions:
        expected = [str(r.id) for r in rows if r.aggregate_id == str(session)]
        on_topic = sorted((found[e][0] for e in expected), key=lambda m: m.offset)
        assert [m.event_id for m in on_topic] == expected
        assert all(m.key == str(session).encode() for m in on_topic)


@BOTH_MODES
def test_a_transaction_committing_after_a_later_one_is_still_published(relay_config, engine):
    """The sequence gap: A takes the earlier seq, B a later one and commits first; A commits later."""
    config = relay_config
    mode = config.relay_mode
    session = uuid.uuid4()
    relay = make_relay(config, engine)
    insert = text("INSERT INTO events (id, aggregate_type, aggregate_id, event_type, version, payload) "
                  "VALUES (:id, 'quiz_session', :s, 'session_ended', 1, jsonb_build_object('ended_at', now())) "
                  "RETURNING seq")
    a_id, b_id = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        with engine.connect() as tx_a:
            a_seq = tx_a.execute(insert, {"id": a_id, "s": session}).scalar()
            with engine.begin() as tx_b:
                b_seq = tx_b.execute(insert, {"id": b_id, "s": session}).scalar()
            assert a_seq < b_seq
            b_mark = wal_head(engine)
            while relay.relay_batch().claimed:
                pass
            assert all_published(engine, [b_id], mode, b_mark)
            tx_a.commit()
        a_mark = wal_head(engine)
        assert not all_published(engine, [a_id], mode, a_mark)
        while relay.relay_batch().claimed:
            pass
    finally:
        relay.close()
    assert all_published(engine, [a_id, b_id], mode, a_mark)
    found = by_event_id(read_topic(config.kafka_bootstrap_servers, config.kafka_topic))
    assert len(found[a_id]) == 1 and len(found[b_id]) == 1


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


def test_only_rows_whose_delivery_succeeded_are_marked(relay_config, engine):
    config = relay_config  # poll mode: claims and marks
    while make_relay(config, engine).relay_batch().claimed:  # earlier tests' leftovers
        pass
    ids = insert_events(engine, 100)
    every_other = itertools.cycle([True, False])
    producer = FailingProducer(make_producer(config), lambda _: next(every_other))
    relay = PollRelay(engine, producer, config.kafka_topic, batch_size=1000, leader_lock=False)
    try:
        result = relay.relay_batch()
    finally:
        relay.close()
    assert (result.claimed, result.published, result.failed) == (100, 50, 50)
    with engine.connect() as conn:
        unpublished = {str(r.id) for r in conn.execute(text(
            "SELECT id FROM events WHERE id = ANY(CAST(:ids AS uuid[])) AND published_at IS NULL"), {"ids": ids})}
    assert unpublished == set(producer.failed_ids)
    relay = make_relay(config, engine)
    try:
        assert relay.relay_batch().published == 50
    finally:
        relay.close()
    assert unpublished_among(engine, ids) == 0


def test_two_relays_at_once_publish_every_event_between_them(relay_config, engine):
    config = relay_config  # poll mode: claims and marks
    relays = [make_relay(config, engine, batch_size=200) for _ in range(2)]
    running = [RunningRelay(r) for r in relays]
    try:
        ids = insert_events(engine, 20_000)
        for _ in range(20):  # more commits while both run
            ids += insert_events(engine, 100)
        wait_published(engine, ids)
    finally:
        for r in running:
            r.stop()
    found = by_event_id(read_topic(config.kafka_bootstrap_servers, config.kafka_topic))
    missing = [e for e in ids if e not in found]
    assert not missing, f"{len(missing)} events never published"
    assert all(len(found[e]) == 1 for e in ids)
    assert all(r.stats.published_total > 0 for r in relays), [r.stats.published_total for r in relays]


@BOTH_MODES
def test_with_leader_election_a_standby_takes_over_and_order_holds(relay_config, engine):
    config = relay_config
    leader, standby = make_relay(config, engine, leader_lock=True), make_relay(config, engine, leader_lock=True)
    running_leader = RunningRelay(leader)
    wait_until(lambda: leader.stats.is_leader, "the first relay did not lead")
    running_standby = RunningRelay(standby)
    sessions = [uuid.uuid4() for _ in range(3)]
    try:
        first = insert_events(engine, 3000, sessions)
        wait_published(engine, first, config.relay_mode)
        assert standby.stats.published_total == 0 and not standby.stats.is_leader
        running_leader.stop()
        second = insert_events(engine, 3000, sessions)
        wait_published(engine, second, config.relay_mode)
    finally:
        running_leader.stop()
        running_standby.stop()
    assert standby.stats.published_total >= len(second)
    found = by_event_id(read_topic(config.kafka_bootstrap_servers, config.kafka_topic))
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, aggregate_id FROM events WHERE aggregate_id = ANY(:s) "
                                 "ORDER BY created_at, seq"), {"s": [str(s) for s in sessions]}).all()
    for session in sessions:
        expected = [str(r.id) for r in rows if r.aggregate_id == str(session)]
        assert [m.event_id for m in sorted((found[e][0] for e in expected), key=lambda m: m.offset)] == expected


# --- wal mode: the slot ---------------------------------------------------------------------------

WAL = pytest.mark.parametrize("relay_mode", ["wal"], indirect=True)


def wal_relay(config, engine, producer=None, **kwargs) -> WalRelay:
    return WalRelay(engine, producer or make_producer(config), config.kafka_topic, leader_lock=False, **kwargs)


def drain(relay) -> None:
    while relay.relay_batch().claimed:
        pass


def backfilled(engine) -> bool:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM outbox_capture WHERE slot_name = :s"),
                            {"s": engine_slot_name(engine)}).scalar() == 1


@WAL
def test_a_new_slot_is_created_by_the_relay_which_first_backfills_what_came_before(relay_config, engine, caplog):
    """Writers may commit before the relay made its slot (a new deployment, a switch from poll mode, a
    slot dropped): the relay publishes those rows the polling way, marking them, then reads its slot."""
    config = relay_config
    caplog.set_level(logging.INFO, logger="outbox_relay")
    with engine.begin() as conn:  # earlier tests' rows: not this test's backfill
        conn.execute(text("UPDATE events SET published_at = now() WHERE published_at IS NULL"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        assert drop_slots_of_database(conn, engine.url.database) == [engine_slot_name(engine)]
        conn.execute(text("DELETE FROM outbox_capture"))
    assert capture_slot(engine) is None
    before = insert_events(engine, 300)
    running = RunningRelay(make_relay(config, engine, leader_lock=True, batch_size=100))
    try:
        wait_until(lambda: capture_slot(engine) is not None and backfilled(engine), "the relay did not backfill")
        assert unpublished_among(engine, before) == 0, "the backfill marks what it published"
        after = insert_events(engine, 300)
        wait_published(engine, after, "wal")
        assert unpublished_among(engine, after) == 300, "what the slot captured is not marked"
    finally:
        running.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert any("created replication slot" in m for m in messages)
    assert any("backfill of slot" in m and "300 events published" in m for m in messages)
    status = capture_slot(engine)
    assert status.name == engine_slot_name(engine) and status.wal_status in ("reserved", "extended")
    found = by_event_id(read_topic(config.kafka_bootstrap_servers, config.kafka_topic))
    assert all(len(found[e]) == 1 for e in before + after)
    on_topic = sorted((found[e][0] for e in before + after), key=lambda m: (m.partition, m.offset))
    for partition in {m.partition for m in on_topic}:  # backfilled events come first in every partition
        kinds = [m.event_id in set(before) for m in on_topic if m.partition == partition]
        assert kinds == sorted(kinds, reverse=True)


@WAL
def test_a_rolled_back_transaction_or_savepoint_is_never_published(relay_config, engine):
    config = relay_config
    insert = text("INSERT INTO events (id, aggregate_type, aggregate_id, event_type, version, payload) "
                  "VALUES (:id, 'quiz_session', :s, 'session_ended', 1, jsonb_build_object('ended_at', now()))")
    session = str(uuid.uuid4())
    kept, rolled_back, in_savepoint = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    with engine.connect() as conn:
        conn.execute(insert, {"id": rolled_back, "s": session})
        conn.rollback()
        with conn.begin():
            conn.execute(insert, {"id": kept, "s": session})
            savepoint = conn.begin_nested()
            conn.execute(insert, {"id": in_savepoint, "s": session})
            savepoint.rollback()
    relay = wal_relay(config, engine)
    try:
        drain(relay)
    finally:
        relay.close()
    found = by_event_id(read_topic(config.kafka_bootstrap_servers, config.kafka_topic))
    assert len(found[kept]) == 1
    assert rolled_back not in found and in_savepoint not in found


@WAL
def test_the_slot_advances_only_past_transactions_kafka_acknowledged_whole(relay_config, engine):
    config = relay_config
    first = insert_events(engine, 50)
    first_end = wal_head(engine)
    second = insert_events(engine, 50)
    second_end = wal_head(engine)
    start = slot_confirmed(engine)
    seen_at_ack = []
    producer = FailingProducer(make_producer(config), {second[17]}.__contains__)
    relay = wal_relay(config, engine, producer, before_mark=lambda ids: seen_at_ack.append(slot_confirmed(engine)))
    try:
        result = relay.relay_batch()
    finally:
        relay.close()
    assert (result.claimed, result.published, result.failed) == (100, 99, 1)
    # Delivered before the advance (the hook runs between the two), then advanced to the end of the
    # first transaction only: the second one had a failed delivery.
    assert seen_at_ack == [start]
    confirmed = slot_confirmed(engine)
    assert first_end >= confirmed > start and confirmed < second_end
    with engine.connect() as conn:  # what a peek now returns: the second transaction only, whole
        pending = conn.execute(text(
            "SELECT count(*) FROM pg_logical_slot_peek_binary_changes(:s, NULL, NULL, 'proto_version', '1', "
            "'publication_names', 'outbox_relay') WHERE substr(data, 1, 1) = 'I'::bytea"),
            {"s": engine_slot_name(engine)}).scalar()
    assert pending == 50
    relay = wal_relay(config, engine)
    try:
        assert relay.relay_batch().published == 50
        drain(relay)
    finally:
        relay.close()
    assert slot_confirmed(engine) >= second_end
    found = by_event_id(read_topic(config.kafka_bootstrap_servers, config.kafka_topic))
    assert all(len(found[e]) == 1 for e in first)
    assert all(e in found for e in second) and len(found[second[17]]) == 1
    assert sum(len(found[e]) == 2 for e in second) == 49  # delivered twice: at-least-once, same event id


@WAL
def test_the_backlog_of_wal_mode_is_what_committed_since_the_relay_last_caught_up(relay_config, engine):
    config = relay_config
    relay = wal_relay(config, engine)
    try:
        drain(relay)
        assert outbox_lag(engine, "wal")[1] == 0
        insert_events(engine, 40)
        lag_s, unpublished = outbox_lag(engine, "wal")
        assert unpublished == 40 and lag_s > 0
        drain(relay)
        relay.housekeeping(force=True)
    finally:
        relay.close()
    assert outbox_lag(engine, "wal") == (0.0, 0)
    assert relay.stats.unpublished == 0 and relay.stats.wal_behind_bytes >= 0


def test_a_database_with_a_slot_can_be_recreated(config):
    from tests.conftest import recreate_database

    url = config.database_url + "_slot"
    recreate_database(url)
    scratch = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with scratch.connect() as conn:
            conn.execute(text("SELECT pg_create_logical_replication_slot(:s, 'pgoutput')"),
                         {"s": engine_slot_name(scratch)})
        scratch.dispose()
        recreate_database(url)  # would fail with "database is used by an active logical replication slot"
        assert capture_slot(scratch) is None
    finally:
        scratch.dispose()
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    finally:
        admin.dispose()


# --- the partitioned outbox: upkeep and retention ---------------------------------------------------

def events_partition_of(engine, ids: list[str]) -> set[str]:
    """The partitions holding these events."""
    with engine.connect() as conn:
        return set(conn.execute(text("SELECT DISTINCT tableoid::regclass::text FROM events "
                                     "WHERE id = ANY(CAST(:ids AS uuid[]))"), {"ids": ids}).scalars())


def partition_exists(engine, name: str) -> bool:
    with engine.connect() as conn:
        return conn.execute(text("SELECT to_regclass(:name) IS NOT NULL"), {"name": name}).scalar()


def make_old_partition(engine, day: str) -> str:
    """The daily partition of `day` (an ISO date long past, no other test's), created as the relay does."""
    with engine.begin() as conn:
        assert conn.execute(text("SELECT events_ensure_partitions(CAST(:d AS date), CAST(:d AS date))"),
                            {"d": day}).scalar() == 1
    return "events_p" + day.replace("-", "")


def move_to_day(engine, ids: list[str], day: str, *, published: bool) -> None:
    """Give these events a creation time in `day` (UTC), published or not (row movement across partitions)."""
    with engine.begin() as conn:
        conn.execute(text(
            "UPDATE events SET created_at = CAST(:d AS timestamptz) + (seq % 86400) * interval '1 second', "
            "published_at = CASE WHEN :published THEN now() - interval '1 hour' END "
            "WHERE id = ANY(CAST(:ids AS uuid[]))"), {"d": day + " 00:00:00+00", "ids": ids, "published": published})


def retention_relay(config, engine, retention_hours: float = 24) -> Relay:
    return PollRelay(engine, make_producer(config), config.kafka_topic, retention_hours=retention_hours,
                 leader_lock=False)


def test_the_migration_and_the_relay_create_daily_partitions_ahead(config, engine):
    with engine.connect() as conn:
        today = conn.execute(text("SELECT (now() AT TIME ZONE 'UTC')::date")).scalar()
    days = [today + timedelta(days=n) for n in range(5)]
    names = [f"events_p{d:%Y%m%d}" for d in days]
    assert all(partition_exists(engine, n) for n in names[:3]), "the migration makes today + 2"
    relay = PollRelay(engine, make_producer(config), config.kafka_topic, retention_hours=0, partition_days_ahead=4,
                  leader_lock=False)
    try:
        relay.housekeeping(force=True)  # retention 0: no retention, but partitions all the same
    finally:
        relay.close()
    assert all(partition_exists(engine, n) for n in names)
    with engine.connect() as conn:
        bound = conn.execute(text("SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = :n"),
                             {"n": names[4]}).scalar()
    assert bound == f"FOR VALUES FROM ('{days[4]} 00:00:00+00') TO ('{days[4] + timedelta(days=1)} 00:00:00+00')"


def test_inserts_at_a_partition_boundary_and_on_days_without_a_partition_land_somewhere(engine):
    with engine.connect() as conn:
        today = conn.execute(text("SELECT (now() AT TIME ZONE 'UTC')::date")).scalar()
    tomorrow = today + timedelta(days=1)
    insert = text("""
        INSERT INTO events (id, aggregate_type, aggregate_id, event_type, version, payload, created_at)
        VALUES (gen_random_uuid(), 'quiz_session', gen_random_uuid()::text, 'session_ended', 1,
                jsonb_build_object('ended_at', now()), CAST(:at AS timestamptz))
        RETURNING id""")
    placed = {}
    for at in (f"{tomorrow} 00:00:00+00", f"{tomorrow} 00:00:00+00", f"{today} 23:59:59.999999+00",
               "2091-03-04 12:00:00+00", "1999-01-01 00:00:00+00"):
        with engine.begin() as conn:
            placed.setdefault(at, []).append(str(conn.execute(insert, {"at": at}).scalar()))
    # Bounds are [day, next day): midnight belongs to the day it starts, twice at one instant is fine.
    assert events_partition_of(engine, placed[f"{tomorrow} 00:00:00+00"]) == {f"events_p{tomorrow:%Y%m%d}"}
    assert events_partition_of(engine, placed[f"{today} 23:59:59.999999+00"]) == {f"events_p{today:%Y%m%d}"}
    # No partition for those days: the default partition takes them, the insert never fails.
    assert events_partition_of(engine, placed["2091-03-04 12:00:00+00"] + placed["1999-01-01 00:00:00+00"]) == {
        "events_default"}
    # A day whose rows are in the default partition cannot get its own: skipped, its rows stay put.
    with engine.begin() as conn:
        assert conn.execute(text("SELECT events_ensure_partitions(DATE '2091-03-04', DATE '2091-03-04')")).scalar() == 0
    assert not partition_exists(engine, "events_p20910304")
    with engine.begin() as conn:  # dated in the future or the past: not left for other tests to replay
        conn.execute(text("DELETE FROM events WHERE id = ANY(CAST(:ids AS uuid[]))"),
                     {"ids": [i for ids in placed.values() for i in ids]})


def test_retention_drops_an_old_partition_whose_events_are_all_published(config, engine):
    partition = make_old_partition(engine, "2020-01-10")
    old, recent = insert_events(engine, 3000), insert_events(engine, 200)
    move_to_day(engine, old, "2020-01-10", published=True)
    with engine.begin() as conn:
        conn.execute(text("UPDATE events SET published_at = now() - interval '3 days' "
                          "WHERE id = ANY(CAST(:ids AS uuid[]))"), {"ids": recent})
    assert events_partition_of(engine, old) == {partition}
    relay = retention_relay(config, engine)
    try:
        relay.housekeeping(force=True)
    finally:
        relay.close()
    assert not partition_exists(engine, partition)
    with engine.connect() as conn:
        left = conn.execute(text("SELECT count(*) FROM events WHERE id = ANY(CAST(:ids AS uuid[]))"),
                            {"ids": old + recent}).scalar()
    # Today's partition is within the retention, however long ago its rows were published.
    assert left == len(recent)


def test_retention_never_drops_a_partition_holding_an_unpublished_event(config, engine, caplog):
    caplog.set_level(logging.INFO, logger="outbox_relay")
    partition = make_old_partition(engine, "2020-02-20")
    published = insert_events(engine, 2000)
    move_to_day(engine, published, "2020-02-20", published=True)
    late = insert_events(engine, 1)
    move_to_day(engine, late, "2020-02-20", published=False)
    relay = retention_relay(config, engine)
    try:
        relay.housekeeping(force=True)
        assert partition_exists(engine, partition)
        assert unpublished_among(engine, late) == 1 and events_partition_of(engine, late) == {partition}
        assert any(partition in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
        # The relay publishes it (the oldest unpublished row: claimed first), then the partition goes.
        wait_until(lambda: relay.relay_batch() and unpublished_among(engine, late) == 0,
                   "the kept event was not published")
        found = by_event_id(read_topic(config.kafka_bootstrap_servers, config.kafka_topic))
        assert late[0] in found
        relay.housekeeping(force=True)
    finally:
        relay.close()
    assert not partition_exists(engine, partition)


def test_retention_checks_for_unpublished_events_under_the_lock_it_drops_with(config, engine):
    """An event written into an old partition by a transaction still open when the retention runs: the
    retention waits for the lock (and gives up this round), then sees the event and keeps the partition."""
    partition = make_old_partition(engine, "2020-03-30")
    published = insert_events(engine, 500)
    move_to_day(engine, published, "2020-03-30", published=True)
    writer = engine.connect()
    try:
        writer.begin()
        writer.execute(text("""
            INSERT INTO events (id, aggregate_type, aggregate_id, event_type, version, payload, created_at)
            VALUES (gen_random_uuid(), 'quiz_session', gen_random_uuid()::text, 'session_ended', 1,
                    jsonb_build_object('ended_at', now()), TIMESTAMPTZ '2020-03-30 12:00:00+00')"""))
        busy = partitions.drop_expired_partitions(engine, 24)
        assert partition in busy.busy and partition_exists(engine, partition)
        writer.commit()
    finally:
        writer.close()
    kept = partitions.drop_expired_partitions(engine, 24)
    assert partition in kept.kept_unpublished and partition_exists(engine, partition)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {partition} SET published_at = now() WHERE published_at IS NULL"))
    assert partition in partitions.drop_expired_partitions(engine, 24).dropped
    assert not partition_exists(engine, partition)


def test_published_rows_of_the_default_partition_are_deleted_row_by_row(config, engine):
    ids = insert_events(engine, 12_000)
    move_to_day(engine, ids, "2019-06-15", published=False)  # no partition that day: the default one
    assert events_partition_of(engine, ids) == {"events_default"}
    with engine.begin() as conn:
        conn.execute(text("UPDATE events SET published_at = now() - interval '3 hours' "
                          "WHERE id = ANY(CAST(:ids AS uuid[]))"), {"ids": ids[:11_000]})
        conn.execute(text("UPDATE events SET published_at = now() WHERE id = ANY(CAST(:ids AS uuid[]))"),
                     {"ids": ids[11_000:11_500]})
    relay = retention_relay(config, engine, retention_hours=2)
    try:
        relay.housekeeping(force=True)
    finally:
        relay.close()
    with engine.connect() as conn:
        left = conn.execute(text("SELECT published_at IS NULL AS unpublished, count(*) FROM events "
                                 "WHERE id = ANY(CAST(:ids AS uuid[])) GROUP BY 1"), {"ids": ids}).all()
    assert dict(left) == {False: 500, True: 500}
    assert relay.stats.unpublished >= 500 and relay.stats.outbox_lag_s > 0
    with engine.begin() as conn:  # published by no relay: not left for the other tests' relays
        conn.execute(text("DELETE FROM events WHERE id = ANY(CAST(:ids AS uuid[]))"), {"ids": ids})


def insert_dated(engine, count: int, at: str) -> list[str]:
    """`count` events created at `at` (an instant long past: an old day's partition or the default one)."""
    with engine.begin() as conn:
        return [str(r.id) for r in conn.execute(text("""
            INSERT INTO events (id, aggregate_type, aggregate_id, event_type, version, payload, created_at)
            SELECT gen_random_uuid(), 'quiz_session', gen_random_uuid()::text, 'session_ended', 1,
                   jsonb_build_object('ended_at', now()), CAST(:at AS timestamptz) + g * interval '1 ms'
            FROM generate_series(1, :n) AS g RETURNING id"""), {"at": at, "n": count})]


@WAL
def test_wal_retention_drops_an_old_partition_only_once_the_slot_captured_it(relay_config, engine, caplog):
    config = relay_config
    caplog.set_level(logging.INFO, logger="outbox_relay")
    partition = make_old_partition(engine, "2020-04-14")
    old = insert_dated(engine, 300, "2020-04-14 12:00:00+00")
    assert events_partition_of(engine, old) == {partition}
    relay = wal_relay(config, engine, retention_hours=24)
    try:
        relay.housekeeping(force=True)
        # Past the retention, so detached from `events` (nothing can write into it any more), but kept:
        # the slot has not passed the inserts of its rows.
        assert partition_exists(engine, partition) and events_partition_of(engine, old) == set()
        assert [name for name, _ in partitions.detached_partitions(engine)] == [partition]
        assert any(partition in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
        relay.housekeeping(force=True)
        assert partition_exists(engine, partition)
        drain(relay)  # captures and publishes them: the slot passes the partition's fence
        relay.housekeeping(force=True)
    finally:
        relay.close()
    assert not partition_exists(engine, partition) and partitions.detached_partitions(engine) == []
    found = by_event_id(read_topic(config.kafka_bootstrap_servers, config.kafka_topic))
    assert all(len(found[e]) == 1 for e in old)


@WAL
def test_wal_retention_deletes_old_rows_of_the_default_partition_only_once_captured(relay_config, engine):
    config = relay_config
    old = insert_dated(engine, 200, "2019-07-01 08:00:00+00")  # no partition that day: the default one
    assert events_partition_of(engine, old) == {"events_default"}
    relay = wal_relay(config, engine, retention_hours=24)
    try:
        relay.housekeeping(force=True)  # the relay has not read its slot yet: nothing is known captured
        assert events_partition_of(engine, old) == {"events_default"}
        drain(relay)
        relay.housekeeping(force=True)
    finally:
        relay.close()
    assert events_partition_of(engine, old) == set()
    found = by_event_id(read_topic(config.kafka_bootstrap_servers, config.kafka_topic))
    assert all(e in found for e in old)


# --- the process: crashes and signals --------------------------------------------------------------

def topic_size(consumer: Consumer, topic: str) -> int:
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
               for p in partitions)


def published_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM events WHERE published_at IS NOT NULL")).scalar()


@BOTH_MODES
def test_sigkill_between_produce_and_mark_republishes_with_the_same_event_id(relay_config, engine):
    """poll: killed after delivery, before the mark; wal: after delivery, before the slot's advance
    (the 60,000 events are one transaction, and the slot only moves past whole transactions)."""
    config = relay_config
    mode = config.relay_mode
    ids = insert_events(engine, 60_000)
    mark = wal_head(engine)
    env = relay_env(config, RELAY_BATCH_SIZE=5000)
    watcher = Consumer({"bootstrap.servers": config.kafka_bootstrap_servers, "group.id": "test-relay-watch"})
    procs = []
    killed_mid_batch = False
    try:
        for _attempt in range(5):
            on_topic, marked = topic_size(watcher, config.kafka_topic), published_count(engine)
            proc = RelayProcess(env)
            procs.append(proc)
            # A real SIGKILL as soon as the topic holds more of this run's messages than rows were marked
            # (wal: as soon as it holds any: the transaction cannot be confirmed before all are acknowledged).
            wait_until(lambda: topic_size(watcher, config.kafka_topic) - on_topic
                       > (published_count(engine) - marked if mode == "poll" else 0),
                       "no delivered, unmarked batch was seen", every_s=0.002)
            proc.signal(signal.SIGKILL)
            proc.wait(10)
            found = by_event_id(read_topic(config.kafka_bootstrap_servers, config.kafka_topic))
            if mode == "wal":
                unmarked = set(ids) if slot_confirmed(engine) < mark else set()
            else:
                with engine.connect() as conn:
                    unmarked = {str(r.id) for r in conn.execute(text(
                        "SELECT id FROM events WHERE id = ANY(CAST(:ids AS uuid[])) AND published_at IS NULL"),
                        {"ids": ids})}
            if any(e in found for e in unmarked):
                killed_mid_batch = True
                break
        assert killed_mid_batch, "no kill landed between produce and mark in 5 attempts"
        proc = RelayProcess(env)
        procs.append(proc)
        wait_published(engine, ids, mode)
        proc.signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        watcher.close()
        for p in procs:
            p.kill_if_running()
    found = by_event_id(read_topic(config.kafka_bootstrap_servers, config.kafka_topic))
    assert all(e in found for e in ids)
    duplicated = [e for e in ids if len(found[e]) > 1]
    assert duplicated
    for event_id in duplicated:
        copies = found[event_id]
        assert len({(m.key, m.value, m.headers["event_id"], m.partition) for m in copies}) == 1
        assert EVENTS.decode(copies[0].value).event_id == uuid.UUID(event_id)


@BOTH_MODES
def test_sigterm_mid_backlog_marks_what_was_delivered_and_exits_0(relay_config, engine):
    config = relay_config
    watcher = Consumer({"bootstrap.servers": config.kafka_bootstrap_servers, "group.id": "test-relay-watch"})
    before = topic_size(watcher, config.kafka_topic)
    ids, chunks = [], []
    for _ in range(30):  # 30 transactions: the slot moves past each once all of it is acknowledged
        chunk = insert_events(engine, 1000)
        ids += chunk
        chunks.append((chunk, wal_head(engine)))
    proc = RelayProcess(relay_env(config, RELAY_BATCH_SIZE=1000))
    try:
        wait_until(lambda: topic_size(watcher, config.kafka_topic) > before, "the relay did not start publishing",
                   every_s=0.01)
        proc.signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        watcher.close()
        proc.kill_if_running()
    assert proc.logged("stopped after publishing")
    found = by_event_id(read_topic(config.kafka_bootstrap_servers, config.kafka_topic))
    if config.relay_mode == "wal":
        # Every transaction the slot passed is on the topic whole.
        confirmed = slot_confirmed(engine)
        passed = [chunk for chunk, mark in chunks if mark <= confirmed]
        assert passed and all(e in found for chunk in passed for e in chunk)
    else:
        with engine.connect() as conn:
            marked = [str(r.id) for r in conn.execute(text(
                "SELECT id FROM events WHERE id = ANY(CAST(:ids AS uuid[])) AND published_at IS NOT NULL"),
                {"ids": ids})]
        assert marked and all(e in found for e in marked)


@BOTH_MODES
def test_an_idle_relay_stops_on_sigterm_and_on_sigint(relay_config):
    config = relay_config
    for signum in (signal.SIGTERM, signal.SIGINT):
        proc = RelayProcess(relay_env(config))
        try:
            wait_until(lambda: proc.logged("relay is the leader") or proc.proc.poll() is not None,
                       "the relay did not lead")
            proc.signal(signum)
            assert proc.wait(10) == 0, proc.lines[-5:]
        finally:
            proc.kill_if_running()


def test_a_bad_setting_exits_2_with_one_line(config):
    done = subprocess.run([sys.executable, "-m", "outbox_relay"], cwd=ROOT, capture_output=True, text=True,
                          env=relay_env(config, RELAY_BATCH_SIZE="lots"), timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "RELAY_BATCH_SIZE" in done.stderr


def test_a_bad_relay_mode_exits_2_with_one_line(config):
    done = subprocess.run([sys.executable, "-m", "outbox_relay"], cwd=ROOT, capture_output=True, text=True,
                          env=relay_env(config, RELAY_MODE="cdc"), timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "RELAY_MODE" in done.stderr and "wal, poll" in done.stderr


# --- broker outage ---------------------------------------------------------------------------------

@pytest.mark.slow
@BOTH_MODES
def test_a_broker_outage_under_load_loses_nothing(relay_config, engine, caplog):
    config = relay_config
    caplog.set_level(logging.INFO, logger="outbox_relay")
    with tempfile.TemporaryDirectory(prefix="relay-kafka-") as workdir:
        kafka = PrivateKafka(Path(workdir))
        try:
            kafka.start()
            private = config.replace(kafka_bootstrap_servers=kafka.bootstrap)
            ensure_topics(private)
            # The backlog of earlier tests goes to the private topic too: drain it first.
            relay = make_relay(config, engine, leader_lock=True, batch_size=200, bootstrap=kafka.bootstrap)
            running = RunningRelay(relay)
            ids: list[str] = []
            writing = threading.Event()
            writing.set()

            def write() -> None:
                while writing.is_set():
                    ids.extend(insert_events(engine, 20))
                    time.sleep(0.01)

            writer = threading.Thread(target=write, daemon=True)
            writer.start()
            try:
                wait_until(lambda: relay.stats.published_total > 500, "events did not flow")
                kafka.kill()
                published_when_killed = relay.stats.published_total
                written_when_killed = len(ids)
                wait_until(lambda: len(ids) > written_when_killed + 2000, "no writes during the outage")
                # Nothing can have been marked while no broker answered.
                assert relay.stats.published_total <= published_when_killed + relay.batch_size
                kafka.start()
                writing.clear()
                writer.join(10)
                wait_published(engine, list(ids), config.relay_mode)
            finally:
                writing.clear()
                running.stop()
            found = by_event_id(read_topic(kafka.bootstrap, config.kafka_topic))
        finally:
            kafka.kill()
    missing = [e for e in ids if e not in found]
    assert not missing, f"{len(missing)} of {len(ids)} events lost"
    outage_warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(outage_warnings) < 10, [r.getMessage() for r in outage_warnings]
