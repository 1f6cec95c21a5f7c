"""The relay's slot in wal mode: created and backfilled by the relay, advanced only past what Kafka
acknowledged."""
from __future__ import annotations

import logging
import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.core.kafka import make_producer
from app.core.outbox import capture_slot, drop_slots_of_database, engine_slot_name, outbox_lag
from tests.helpers import wait_until
from tests.integration.relay.support import (
    WAL,
    FailingProducer,
    RunningRelay,
    by_event_id,
    drain,
    insert_events,
    make_relay,
    read_topic,
    slot_confirmed,
    unpublished_among,
    wait_published,
    wal_head,
    wal_relay,
)


def backfilled(engine) -> bool:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM outbox_capture WHERE slot_name = :s"),
                            {"s": engine_slot_name(engine)}).scalar() == 1


@WAL
def test_a_new_slot_is_created_by_the_relay_which_first_backfills_what_came_before(relay_config, engine,
                                                                                   caplog):
    """Writers may commit before the relay made its slot (a new deployment, a switch from poll mode, a
    slot dropped): the relay publishes those rows the polling way, marking them, then reads its slot."""
    config = relay_config
    caplog.set_level(logging.INFO, logger="outbox_relay")
    with engine.begin() as conn:  # earlier tests' rows: not this test's backfill
        conn.execute(text("UPDATE events SET published_at = now() WHERE published_at IS NULL"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # Ours, beside any slot another relay mode's test left (Debezium's keeps its own until the run ends)
        assert engine_slot_name(engine) in drop_slots_of_database(conn, engine.url.database)
        conn.execute(text("DELETE FROM outbox_capture"))
    assert capture_slot(engine) is None
    before = insert_events(engine, 300)
    running = RunningRelay(make_relay(config, engine, leader_lock=True, batch_size=100))
    try:
        wait_until(lambda: capture_slot(engine) is not None and backfilled(engine),
                   "the relay did not backfill")
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
                  "VALUES (:id, 'quiz_session', :s, 'session_ended', 1, "
                  "jsonb_build_object('ended_at', now()))")
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
    relay = wal_relay(config, engine, producer,
                      before_mark=lambda ids: seen_at_ack.append(slot_confirmed(engine)))
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
def test_the_caught_up_record_keeps_a_transaction_open_meanwhile_at_or_above_its_fence(relay_config, engine):
    """The fence a promoted standby's relay republishes from (outbox_capture.caught_up_xmin, replicated):
    a transaction still running when the relay caught up is never below it, however long it runs."""
    relay = wal_relay(relay_config, engine)
    try:
        drain(relay)
        with engine.connect() as open_transaction:
            running = int(open_transaction.execute(text("SELECT pg_current_xact_id()::text")).scalar_one())
            insert_events(engine, 10)
            drain(relay)
            with engine.connect() as conn:
                row = conn.execute(text("SELECT caught_up_xmin FROM outbox_capture WHERE slot_name = :s"),
                                   {"s": engine_slot_name(engine)}).one()
            open_transaction.rollback()
    finally:
        relay.close()
    assert row.caught_up_xmin is not None and row.caught_up_xmin <= running


@WAL
def test_a_leader_without_the_slot_republishes_only_from_the_replicated_fence(relay_config, engine):
    """A promoted standby has the capture row (replicated) but not the slot (PostgreSQL 15): the relay
    makes the slot and republishes the rows inserted from the last caught-up record's fence on, not
    every retained row, and counts them."""
    config = relay_config
    relay = wal_relay(config, engine)
    try:
        drain(relay)
        before = insert_events(engine, 50)
        drain(relay)  # caught up: its record and fence are past these
        after = insert_events(engine, 30)  # committed after the last caught-up record
    finally:
        relay.close()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # Ours, beside any slot another relay mode's test left (Debezium's keeps its own until the run ends)
        assert engine_slot_name(engine) in drop_slots_of_database(conn, engine.url.database)
        fence = conn.execute(text("SELECT caught_up_xmin FROM outbox_capture WHERE slot_name = :s"),
                             {"s": engine_slot_name(engine)}).scalar_one()
        window = set(map(str, conn.execute(text(
            "SELECT id FROM events WHERE published_at IS NULL AND "
            "age(xmin) <= age(CAST(CAST(CAST(:f AS bigint) % 4294967296 AS text) AS xid))"),
            {"f": fence}).scalars()))
    # The rows from the fence on: those committed after the caught-up record (and those of any transaction
    # that was still running then, on this server: none when nothing else writes).
    assert set(after) <= window
    relay = wal_relay(config, engine)
    try:
        drain(relay)
    finally:
        relay.close()
    assert relay.stats.failover_republished_total == len(window)
    assert capture_slot(engine) is not None
    found = by_event_id(read_topic(config.kafka_bootstrap_servers, config.kafka_topic))
    assert all(len(found[e]) >= 1 for e in before + after)


@WAL
def test_a_slot_made_on_another_timeline_is_made_again_and_the_relay_republishes_from_the_fence(
        relay_config, engine, caplog):
    """A former leader promoted again still has the slot it made then (Patroni leaves it alone): the
    capture row (replicated) names the timeline the relay's slot was made on, and a relay on a leader of
    another timeline drops the slot it finds, makes it again and republishes from the fence, as on a
    leader without a slot, instead of reading a slot whose WAL diverged."""
    caplog.set_level(logging.WARNING, logger="outbox_relay")
    config = relay_config
    slot = engine_slot_name(engine)
    relay = wal_relay(config, engine)
    try:
        drain(relay)
        drain(relay)  # caught up: its record and fence are past what came before
        after = insert_events(engine, 20)
    finally:
        relay.close()
    with engine.begin() as conn:
        now, recorded = conn.execute(text(
            "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int, "
            "slot_timeline FROM outbox_capture WHERE slot_name = :s"), {"s": slot}).one()
        assert recorded == now  # the relay recorded the timeline its slot is on
        # As the row reads on a leader promoted since: the slot was made on the timeline before.
        conn.execute(text("UPDATE outbox_capture SET slot_timeline = slot_timeline - 1 WHERE slot_name = :s"),
                     {"s": slot})
    relay = wal_relay(config, engine)
    try:
        drain(relay)
    finally:
        relay.close()
    assert any("was made on timeline" in r.getMessage() for r in caplog.records)
    assert relay.stats.failover_republished_total >= len(after)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT slot_timeline FROM outbox_capture WHERE slot_name = :s"),
                            {"s": slot}).scalar_one() == now
    assert capture_slot(engine) is not None
    found = by_event_id(read_topic(config.kafka_bootstrap_servers, config.kafka_topic))
    assert all(found[e] for e in after)


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
