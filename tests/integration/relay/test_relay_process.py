"""The relay as a process: crashes and signals, bad settings."""
from __future__ import annotations

import signal
import subprocess
import sys
import uuid

from confluent_kafka import Consumer
from sqlalchemy import text

from tests.events import EVENTS
from tests.helpers import wait_until
from tests.integration.relay.support import (
    BOTH_MODES,
    ROOT,
    RelayProcess,
    by_event_id,
    insert_events,
    read_topic,
    relay_env,
    slot_confirmed,
    topic_ends,
    wait_published,
    wal_head,
)


def topic_size(consumer: Consumer, topic: str) -> int:
    return sum(topic_ends(consumer, topic).values())


def published_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM events WHERE published_at IS NOT NULL")).scalar()


@BOTH_MODES
def test_sigkill_between_produce_and_mark_republishes_with_the_same_event_id(relay_config, engine):
    """poll: killed after delivery, before the mark; wal: after delivery, before the slot's advance
    (the 15,000 events are one transaction, and the slot only moves past whole transactions). The kill
    is sent in the first delivered batch's window: three batches of 5,000 leave it as wide as more would,
    and more only lengthen the republish the test waits for.
    The topic is read from where it ended before the test (each attempt: before its relay started):
    the events are new, so no copy of one can be older; the topic holds every earlier relay test's."""
    config = relay_config
    mode = config.relay_mode
    watcher = Consumer({"bootstrap.servers": config.kafka_bootstrap_servers, "group.id": "test-relay-watch"})
    before_test = topic_ends(watcher, config.kafka_topic)
    ids = insert_events(engine, 15_000)
    mark = wal_head(engine)
    env = relay_env(config, RELAY_BATCH_SIZE=5000)
    procs = []
    killed_mid_batch = False
    try:
        for _attempt in range(5):
            # Nothing runs between attempts: a copy on the topic of a row unmarked now was sent by this
            # attempt's relay (one sent earlier was marked before its kill, or ended that attempt).
            before_attempt = topic_ends(watcher, config.kafka_topic)
            on_topic, marked = sum(before_attempt.values()), published_count(engine)
            proc = RelayProcess(env)
            procs.append(proc)
            # A real SIGKILL as soon as the topic holds more of this run's messages than rows were marked
            # (wal: as soon as it holds any: the transaction cannot be confirmed before all are acknowledged).
            wait_until(lambda on_topic=on_topic, marked=marked:
                       topic_size(watcher, config.kafka_topic) - on_topic
                       > (published_count(engine) - marked if mode == "poll" else 0),
                       "no delivered, unmarked batch was seen", every_s=0.002)
            proc.signal(signal.SIGKILL)
            proc.wait(10)
            found = by_event_id(read_topic(config.kafka_bootstrap_servers, config.kafka_topic,
                                           since=before_attempt))
            if mode == "wal":
                unmarked = set(ids) if slot_confirmed(engine) < mark else set()
            else:
                with engine.connect() as conn:
                    unmarked = {str(r.id) for r in conn.execute(text(
                        "SELECT id FROM events "
                        "WHERE id = ANY(CAST(:ids AS uuid[])) AND published_at IS NULL"), {"ids": ids})}
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
    found = by_event_id(read_topic(config.kafka_bootstrap_servers, config.kafka_topic, since=before_test))
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
        # A whole transaction on the topic: the one the stopping relay finishes next ends past the first
        # chunk's mark (a mark is the WAL head after a commit, past its end when other databases write).
        wait_until(lambda: topic_size(watcher, config.kafka_topic) > before + 1000,
                   "the relay did not start publishing", every_s=0.01)
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
            wait_until(lambda proc=proc: proc.logged("relay is the leader") or proc.proc.poll() is not None,
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
