"""The partitioned outbox: partitions made ahead, and a retention that drops only what was relayed."""
from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import text

from app.core.kafka import make_producer
from outbox_relay import partitions
from outbox_relay.poll import PollRelay
from outbox_relay.relay import Relay
from tests.helpers import wait_until
from tests.integration.relay.support import (
    WAL,
    by_event_id,
    drain,
    insert_events,
    read_topic,
    unpublished_among,
    wal_relay,
)


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
            "WHERE id = ANY(CAST(:ids AS uuid[]))"),
                     {"d": day + " 00:00:00+00", "ids": ids, "published": published})


def retention_relay(config, engine, retention_hours: float = 24) -> Relay:
    return PollRelay(engine, make_producer(config), config.kafka_topic, retention_hours=retention_hours,
                 leader_lock=False)


def test_the_migration_and_the_relay_create_daily_partitions_ahead(config, engine):
    with engine.connect() as conn:
        today = conn.execute(text("SELECT (now() AT TIME ZONE 'UTC')::date")).scalar()
    days = [today + timedelta(days=n) for n in range(5)]
    names = [f"events_p{d:%Y%m%d}" for d in days]
    assert all(partition_exists(engine, n) for n in names[:3]), "the migration makes today + 2"
    relay = PollRelay(engine, make_producer(config), config.kafka_topic, retention_hours=0,
                      partition_days_ahead=4,
                  leader_lock=False)
    try:
        relay.housekeeping(force=True)  # retention 0: no retention, but partitions all the same
    finally:
        relay.close()
    assert all(partition_exists(engine, n) for n in names)
    with engine.connect() as conn:
        bound = conn.execute(text("SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = :n"),
                             {"n": names[4]}).scalar()
    assert bound == (f"FOR VALUES FROM ('{days[4]} 00:00:00+00') "
                     f"TO ('{days[4] + timedelta(days=1)} 00:00:00+00')")


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
    assert events_partition_of(engine,
                               placed["2091-03-04 12:00:00+00"] + placed["1999-01-01 00:00:00+00"]) == {
        "events_default"}
    # A day whose rows are in the default partition cannot get its own: skipped, its rows stay put.
    with engine.begin() as conn:
        assert conn.execute(text("SELECT events_ensure_partitions(DATE '2091-03-04', "
                                 "DATE '2091-03-04')")).scalar() == 0
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

        def retired() -> bool:
            # A row goes once the relay has read its slot to the end after the row's transaction and
            # every transaction older than it (of any database on the server: the fence is the server's
            # oldest running one) had ended; another database's long transaction only delays it.
            drain(relay)
            relay.housekeeping(force=True)
            return events_partition_of(engine, old) == set()

        wait_until(retired, "the captured old rows of the default partition deleted")
    finally:
        relay.close()
    found = by_event_id(read_topic(config.kafka_bootstrap_servers, config.kafka_topic))
    assert all(e in found for e in old)
