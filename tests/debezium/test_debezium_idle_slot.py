"""An idle outbox under Debezium (RELAY_MODE=debezium): with no outbox write, its slot still advances while
other databases of the same server write WAL (the connector's lsn.flush.mode and heartbeats,
outbox_relay/debezium.py), so the slot does not hold that WAL for ever (RelaySlotRetainingWal) and
partitions retire on schedule; once events stopped, the slot passes their transactions' end too, so the
last ones count as published. The heartbeats reach a topic of their own only."""
from __future__ import annotations

from sqlalchemy import create_engine, text

from app.core.outbox import engine_slot_name, published_condition
from outbox_relay import debezium
from outbox_relay.debezium import DebeziumHousekeeper
from tests.debezium.test_debezium_metrics import scrape
from tests.debezium.test_debezium_relay import insert_one, on_topic
from tests.helpers import wait_until
from tests.integration.relay.support import read_topic

# A logical message in another database: WAL of that database, no object left behind.
OTHER_WAL = text("SELECT pg_logical_emit_message(true, 'livequiz-test-other-database', 'wal')::text")


def polled(port: int, connector: str) -> float:
    """Records the connector's task read from Debezium (its heartbeats too)."""
    return sum(value for labels, value in scrape(port)["kafka_connect_source_record_poll_total"]
               if labels["connector"] == connector)


def test_an_idle_outbox_slot_advances_while_another_database_writes_wal(debezium_connect, relayed, engine):
    slot = engine_slot_name(engine, "debezium")
    other = create_engine(engine.url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with other.connect() as conn:
            written = conn.execute(OTHER_WAL).scalar_one()

        def passed() -> bool:
            with other.connect() as conn:
                conn.execute(OTHER_WAL)  # the other database goes on writing; ours writes nothing
            with engine.connect() as conn:
                return bool(conn.execute(
                    text("SELECT confirmed_flush_lsn >= CAST(:lsn AS pg_lsn) FROM pg_replication_slots "
                         "WHERE slot_name = :slot"), {"lsn": written, "slot": slot}).scalar())

        wait_until(passed, f"Debezium's slot stayed behind {written}, written by another database")
    finally:
        other.dispose()
    # Heartbeats were read (nothing else was written), and dropped: the next row of an unknown type is the
    # first message on the dead-letter topic, and the events topic has none.
    port, connector = debezium_connect.config.connect_metrics_port, debezium.connector_name(relayed)
    start = polled(port, connector)
    wait_until(lambda: polled(port, connector) > start, "Debezium sent no heartbeat",
               timeout_s=debezium.HEARTBEAT_MS / 1000 * 3 + 30)
    sentinel = insert_one(engine, kind="mystery_aggregate")
    on_topic(relayed, [sentinel], relayed.kafka_dlq_topic)
    servers = relayed.kafka_bootstrap_servers
    assert [m.event_id for m in read_topic(servers, relayed.kafka_dlq_topic)] == [sentinel]
    assert read_topic(servers, relayed.kafka_topic) == []
    assert read_topic(servers, debezium.heartbeat_topic(f"{relayed.kafka_topic}.debezium"))


def test_the_last_events_before_the_outbox_goes_idle_count_as_published(debezium_connect, relayed, engine):
    """No later event pushes them: the slot passes the end of their transactions and the WAL other databases
    write after them, so the relay process under Debezium (DebeziumHousekeeper) records them delivered
    (`ops outbox`'s backlog empties; the partitions' fence passes)."""
    ids = [insert_one(engine) for _ in range(3)]  # three transactions, the last the outbox's last for now
    on_topic(relayed, ids)
    housekeeper = DebeziumHousekeeper(engine, leader_lock=False)
    other = create_engine(engine.url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        housekeeper.advance_fence()  # a WAL head taken after the last event

        def passed() -> bool:
            with other.connect() as conn:
                conn.execute(OTHER_WAL)
            return housekeeper.advance_fence()

        wait_until(passed, "Debezium's slot never passed a WAL head taken after the outbox's last event",
                   every_s=0.5)
    finally:
        housekeeper.close()
        other.dispose()
    published, params = published_condition(engine, "debezium")
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM events WHERE id = ANY(CAST(:ids AS uuid[])) AND "
                                 f"{published}"), {"ids": ids, **params}).scalar() == len(ids)
