"""An idle outbox under Debezium (RELAY_MODE=debezium): with no outbox write, its slot still advances while
other databases of the same server write WAL (the connector's lsn.flush.mode, outbox_relay/debezium.py), so
the slot does not hold that WAL for ever (RelaySlotRetainingWal) and partitions retire on schedule."""
from __future__ import annotations

from sqlalchemy import create_engine, text

from app.core.outbox import engine_slot_name
from tests.helpers import wait_until

# A logical message in another database: WAL of that database, no object left behind.
OTHER_WAL = text("SELECT pg_logical_emit_message(true, 'livequiz-test-other-database', 'wal')::text")


def test_an_idle_outbox_slot_advances_while_another_database_writes_wal(relayed, engine):
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
