"""The outbox relay's completeness, key and order: every event reaches Kafka once, keyed by its
aggregate, in order."""
from __future__ import annotations

import itertools
import uuid

from sqlalchemy import text

from app.core.kafka import make_producer
from outbox_relay.poll import PollRelay
from tests.helpers import Api, wait_until
from tests.integration.relay.burst import Burst
from tests.integration.relay.support import (
    BOTH_MODES,
    FailingProducer,
    RunningRelay,
    all_published,
    by_event_id,
    insert_events,
    make_relay,
    read_topic,
    unpublished_among,
    wait_published,
    wal_head,
)


@BOTH_MODES
def test_a_burst_of_answers_reaches_kafka_once_each_keyed_and_in_session_order(app, api: Api, relay_config,
                                                                               engine):
    config = relay_config
    burst = Burst.joined(api, players_each=30)
    running = RunningRelay(make_relay(config, engine, leader_lock=True, batch_size=50))
    try:
        burst.play(app, api, workers=24)
        rows = burst.events(engine)
        wait_published(engine, [str(r.id) for r in rows], config.relay_mode)
    finally:
        running.stop()
    burst.check_published(rows, by_event_id(read_topic(config.kafka_bootstrap_servers, config.kafka_topic)))


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
                  "VALUES (:id, 'quiz_session', :s, 'session_ended', 1, "
                  "jsonb_build_object('ended_at', now())) RETURNING seq")
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
            "SELECT id FROM events WHERE id = ANY(CAST(:ids AS uuid[])) AND published_at IS NULL"),
            {"ids": ids})}
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
    leader = make_relay(config, engine, leader_lock=True)
    standby = make_relay(config, engine, leader_lock=True)
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
        assert [m.event_id for m in sorted((found[e][0] for e in expected),
                                           key=lambda m: m.offset)] == expected
