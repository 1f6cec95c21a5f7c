"""`ops outbox`: the backlog and retained history of the events outbox."""
from __future__ import annotations

import sys

import click

from app.core.outbox import SLOT_MODES, capture_slot, drop_slots_of_database, engine_slot_name, outbox_status
from app.ops.common import config, database, ops


@ops.command("outbox")
@click.option("--max-lag", type=click.FloatRange(min=0), default=None,
              help="Exit 1 when the oldest unpublished event is older than this many seconds.")
def outbox_command(max_lag: float | None) -> None:
    """Counts of unpublished and published events and the age of the oldest unpublished one.

    Published events are kept RELAY_RETENTION_HOURS after the end of their day, then the relay drops
    their day's partition.
    """
    status = outbox_status(database(), config().relay_mode)
    click.echo(f"outbox: {status.unpublished} unpublished, {status.published} published (retained), "
               f"oldest unpublished {status.oldest_unpublished_age_s:.1f} s old")
    if max_lag is not None and status.oldest_unpublished_age_s > max_lag:
        sys.exit(1)


# Whose slot each relay mode reads, as `relay-slot` names it.
SLOT_OWNERS = {"wal": "our relay's, RELAY_MODE=wal", "debezium": "Debezium's, RELAY_MODE=debezium"}


@ops.command("relay-slot")
@click.argument("action", type=click.Choice(["show", "drop"]), default="show")
def relay_slot_command(action: str) -> None:
    """The relays' replication slots of this database: ours (RELAY_MODE=wal) and Debezium's (RELAY_MODE=
    debezium, which Kafka Connect reads). `show` (default) prints each, whatever this shell's RELAY_MODE
    (the stack may run the other relay), with its state and how much WAL it holds back, and exits 1 when
    one is invalidated; `drop` removes RELAY_MODE's (terminating the relay or connector reading it).

    Drop a slot whose database is no longer relayed (it retains WAL for ever), or an invalidated one
    (wal_status lost): the relay in wal mode then creates a fresh slot and backfills, and Debezium's
    connector a fresh slot whose snapshot does the same (once its offsets are reset), publishing the
    retained outbox rows never marked published again (consumers dedupe by event id).
    """
    engine = database()
    if action == "drop":
        mode = config().relay_mode if config().relay_mode in SLOT_MODES else "wal"
        slot = engine_slot_name(engine, mode)
        if capture_slot(engine, slot) is None:
            click.echo(f"relay slot {slot}: none ({SLOT_OWNERS[mode]})")
            return
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            drop_slots_of_database(conn, engine.url.database, only=slot)
        click.echo(f"relay slot {slot}: dropped ({SLOT_OWNERS[mode]})")
        return
    lost = False
    for mode in SLOT_MODES:
        slot = engine_slot_name(engine, mode)
        status = capture_slot(engine, slot)
        if status is None:
            click.echo(f"relay slot {slot}: none ({SLOT_OWNERS[mode]})")
            continue
        activity = f"active (pid {status.active_pid})" if status.active else "inactive"
        click.echo(f"relay slot {slot}: {activity}, wal_status {status.wal_status}, confirmed "
                   f"{status.confirmed_flush_lsn}, {status.behind_bytes} bytes behind ({SLOT_OWNERS[mode]})")
        lost = lost or status.lost
    if lost:
        sys.exit(1)
