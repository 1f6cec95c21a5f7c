"""Debezium across a PostgreSQL failover, on one server. A promoted standby has the capture row
(`outbox_capture`, replicated) but not Debezium's slot (PostgreSQL 15 does not carry logical slots to a
standby), and the connector's stored position is gone. The connector (snapshot.mode when_needed) makes
its slot again and snapshots the outbox from the replicated fence on, which the relay process
(DebeziumHousekeeper) keeps until the snapshot ran: what committed in between is published, what was
delivered before the fence is not published again, and the snapshot's rows are counted. Here the failover
is played by dropping the slot while no connector reads it; the leader going away, by ending Debezium's
replication connection."""
from __future__ import annotations

import re

from sqlalchemy import text

from app.core.outbox import engine_slot_name
from outbox_relay.debezium import RESTART_WAIT_MS, DebeziumHousekeeper
from outbox_relay.process import build_relay
from tests.debezium.test_debezium_relay import insert_one, on_topic
from tests.debezium_connect import slot_active
from tests.helpers import wait_until
from tests.integration.worker_support import fresh_topics

REPUBLISH_FROM = text("SELECT republish_from FROM outbox_capture WHERE slot_name = :s")
RESTART_LINE = re.compile(r"Going to restart connector after (\d+) sec")


def _housekeeper(config) -> DebeziumHousekeeper:
    relay = build_relay(config.replace(relay_mode="debezium"), leader_lock=False, serve_metrics=False)
    assert isinstance(relay, DebeziumHousekeeper)
    return relay


def _caught_up(housekeeper: DebeziumHousekeeper, config, engine) -> None:
    """Until the caught-up record is past everything committed so far: the slot passed a head taken now.
    Debezium confirms an event's position once a later one's offset is committed: events keep coming, as
    traffic does."""
    housekeeper.advance_fence()

    def passed() -> bool:
        on_topic(config, [insert_one(engine)])
        return housekeeper.advance_fence()

    wait_until(passed, "Debezium's slot never passed the WAL head")


def _drop_slot(engine) -> None:
    """What a promoted standby looks like: the capture row, no slot."""
    wait_until(lambda: not slot_active(engine), "Debezium's slot stayed in use")
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_drop_replication_slot(:s)"), {"s": engine_slot_name(engine, "debezium")})


def _kept_fence(engine):
    with engine.connect() as conn:
        return conn.execute(REPUBLISH_FROM, {"s": engine_slot_name(engine, "debezium")}).scalar_one()


def test_a_new_leader_without_debeziums_slot_republishes_from_the_fence_and_no_more(
        debezium_connect, engine, kafka_topics):
    config = debezium_connect.start(fresh_topics(kafka_topics), engine)
    housekeeper = _housekeeper(config)
    try:
        before = [insert_one(engine) for _ in range(5)]
        on_topic(config, before)
        _caught_up(housekeeper, config, engine)
        debezium_connect.stop(config, engine)
        _drop_slot(engine)
        gap = [insert_one(engine) for _ in range(20)]  # committed where no slot will ever decode them
        assert not housekeeper.advance_fence()  # sees the slot missing: the fence is kept for the snapshot
        assert _kept_fence(engine) is not None
        debezium_connect.start(config, engine, from_now=False, snapshot_mode="when_needed")
        after = [insert_one(engine) for _ in range(5)]
        found = on_topic(config, before + gap + after)
        _caught_up(housekeeper, config, engine)  # the new slot streams: the kept fence has done its work
    finally:
        debezium_connect.stop(config, engine)
        housekeeper.close()
    assert _kept_fence(engine) is None
    assert all(len(found[e]) == 1 for e in before)  # delivered before the fence: not published again
    assert all(found[e] for e in gap + after)
    assert housekeeper.stats.failover_republished_total >= len(gap)


def test_a_slot_debezium_made_again_before_the_relay_process_looked_is_known_by_its_timeline(
        debezium_connect, engine, kafka_topics):
    config = debezium_connect.start(fresh_topics(kafka_topics), engine)
    housekeeper = _housekeeper(config)
    slot = engine_slot_name(engine, "debezium")
    try:
        before = [insert_one(engine) for _ in range(3)]
        on_topic(config, before)
        _caught_up(housekeeper, config, engine)  # also records the timeline Debezium's slot is on
        debezium_connect.stop(config, engine)
        _drop_slot(engine)
        gap = [insert_one(engine) for _ in range(20)]
        debezium_connect.start(config, engine, from_now=False, snapshot_mode="when_needed")
        found = on_topic(config, before + gap)
        with engine.begin() as conn:  # as the row reads on a leader promoted since
            assert conn.execute(text("UPDATE outbox_capture SET slot_timeline = slot_timeline - 1 "
                                     "WHERE slot_name = :s AND slot_timeline IS NOT NULL"),
                                {"s": slot}).rowcount == 1
        housekeeper.advance_fence()
        assert _kept_fence(engine) is not None  # kept until the new slot passes a head taken from now on
        _caught_up(housekeeper, config, engine)
    finally:
        debezium_connect.stop(config, engine)
        housekeeper.close()
    assert _kept_fence(engine) is None
    assert all(len(found[e]) == 1 for e in before) and all(found[e] for e in gap)
    assert housekeeper.stats.failover_republished_total >= len(gap)


def test_a_lost_replication_connection_is_made_again_after_the_stacks_restart_wait(
        debezium_connect, engine, kafka_topics):
    """A leader going away ends Debezium's replication connection: a retriable error, after which the task
    starts again on its own once RESTART_WAIT_MS passed (Debezium's default, 10 s, added that much to a
    failover's time to streaming), and what was written meanwhile is published."""
    config = debezium_connect.start(fresh_topics(kafka_topics), engine)
    try:
        on_topic(config, [insert_one(engine)])
        logged = len(debezium_connect.log())
        with engine.begin() as conn:
            ended = conn.execute(text("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                                      "WHERE slot_name = :s AND active"),
                                 {"s": engine_slot_name(engine, "debezium")}).scalar()
        assert ended
        restart = wait_until(lambda: RESTART_LINE.search(debezium_connect.log()[logged:]),
                             "Debezium's task did not go to restart after its connection ended")
        after = [insert_one(engine) for _ in range(5)]
        found = on_topic(config, after)
    finally:
        debezium_connect.stop(config, engine)
    assert int(restart.group(1)) == RESTART_WAIT_MS // 1000
    assert all(found[e] for e in after)
