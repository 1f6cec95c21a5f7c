"""The events outbox: the one place that writes it, inside the caller's transaction, and reads its backlog.

Every state change records its event here, in the same transaction as the change (DESIGN.md,
invariant 1). Use cases call `record_event` with their ORM session or Core connection; the paths
that write a whole batch in one SQL statement embed `outbox_insert`. Both count the event in
`events_written_total` once the transaction has committed, through `count_committed`. Both write the
event's `traceparent` (app/core/tracing.py): `record_event` the span context current in the caller (a
request's), `outbox_insert` the one each row of the batch carries (captured where its request or message
was read, `normal_traceparent`).

The backlog depends on the relay's mode (RELAY_MODE, outbox_relay/capture.py):
- `poll`: the unpublished rows (`published_at IS NULL`, the partial index), as marked by the relay.
- `wal`: the relay reads the outbox from a logical replication slot and marks no row. Whatever
  committed before `outbox_capture.caught_up_at` (written by the relay whenever it has read its slot
  to the end and every event was acknowledged) is captured; the backlog is the rows created after
  that instant (by creation time, so a transaction that committed long after it began may be counted
  as captured a moment early). The slot itself (`capture_slot`) tells how many WAL bytes it is behind.
- `debezium`: the same, with Debezium's slot (Kafka Connect reads it); `caught_up_at` is written by the
  relay process, which under Debezium only keeps the outbox (outbox_relay/debezium.py).
The slots' names are derived here, from the database's name, for the relays, `ops` and the tests.
"""
from __future__ import annotations

import re
import uuid
import zlib
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, event, insert, text
from sqlalchemy.orm import Session

from app.core.events import EventTypes, new_event_id
from app.core.metrics import EVENTS_WRITTEN
from app.core.models import Event
from app.core.tracing import current_traceparent

# Event types recorded in the session's open transaction; counted only once it commits.
_UNCOMMITTED = "livequiz.uncommitted_event_types"

# Served by the partial index ix_events_unpublished: cheap while the relay keeps up.
_LAG = text("""
    SELECT EXTRACT(EPOCH FROM clock_timestamp() - min(created_at)) AS lag_s, count(*) AS unpublished
    FROM events WHERE published_at IS NULL""")
# In wal mode every row keeps `published_at IS NULL`, so the same partial index serves the creation-time
# range.
_WAL_LAG = text("""
    SELECT EXTRACT(EPOCH FROM clock_timestamp() - min(created_at)) AS lag_s, count(*) AS unpublished
    FROM events
    WHERE published_at IS NULL
      AND created_at > COALESCE((SELECT caught_up_at FROM outbox_capture WHERE slot_name = :slot),
                                '-infinity')""")
_SLOT = text("""
    SELECT slot_name, plugin, active, active_pid, wal_status,
           confirmed_flush_lsn::text AS confirmed_flush_lsn,
           pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint AS behind_bytes
    FROM pg_replication_slots WHERE slot_name = :slot""")

# The publication the relay's slot decodes (created by migration 0006: inserts into `events`, named by
# the root table rather than the day's partition).
CAPTURE_PUBLICATION = "outbox_relay"
CAPTURE_SLOT_PREFIX = "outbox_relay_"
# Debezium's slot of a database (RELAY_MODE=debezium): a slot of its own, never read by our relay.
DEBEZIUM_SLOT_PREFIX = "debezium_outbox_"
# The modes that read the outbox from a slot and mark no row.
SLOT_MODES = ("wal", "debezium")
_SLOT_NAME_MAX = 63  # NAMEDATALEN - 1


def record_event(db: Session | Connection, events: EventTypes, aggregate_id: uuid.UUID | str, event_type: str,
                 payload) -> uuid.UUID:
    """Append the event of a change to the outbox, in the caller's transaction (an ORM session's or a
    Core connection's); `events` are its aggregate's (app/quiz/events.py, app/leaderboards/events.py),
    `aggregate_id` the session's or the board's id."""
    event_id = new_event_id()
    db.execute(insert(Event).values(
        id=event_id,
        aggregate_type=events.aggregate_type,
        aggregate_id=str(aggregate_id),
        event_type=event_type,
        version=events.current_version[event_type],
        payload=events.payload_for(event_type, payload),
        traceparent=current_traceparent(),
    ))
    connection = db.connection() if isinstance(db, Session) else db
    connection.info.setdefault(_UNCOMMITTED, []).append(event_type)
    return event_id


def outbox_insert(events: EventTypes, event_id: str, aggregate_id: str, event_type: str, payload: str, *,
                  traceparent: str, source: str) -> str:
    """`INSERT INTO events ... SELECT` of one event per row of `source`, for a statement that writes a
    batch at once; the arguments are SQL expressions over `source`, `event_type` a quoted literal,
    `traceparent` each row's (well formed or NULL: `normal_traceparent`)."""
    version, aggregate_type = events.current_version[event_type.strip("'")], events.aggregate_type
    return (f"INSERT INTO events (id, aggregate_type, aggregate_id, event_type, version, payload, "
            f"traceparent) SELECT {event_id}, '{aggregate_type}', {aggregate_id}, {event_type}, {version}, "
            f"{payload}, {traceparent} FROM {source} RETURNING id")


def count_committed(event_type: str, count: int = 1) -> None:
    """Count events whose transaction has committed."""
    if count:
        EVENTS_WRITTEN.labels(event_type).inc(count)


@event.listens_for(Engine, "commit")
def _count_committed_events(connection: Connection) -> None:
    for event_type in connection.info.pop(_UNCOMMITTED, ()):
        count_committed(event_type)


@event.listens_for(Engine, "begin")
@event.listens_for(Engine, "rollback")
def _forget_rolled_back_events(connection: Connection) -> None:
    """At a rollback, and at every begin (a rollback of a connection the server dropped cannot reach
    the connection's record: what it held is forgotten when the record is next used)."""
    if connection.invalidated:
        return
    connection.info.pop(_UNCOMMITTED, None)


def capture_slot_name(database: str, mode: str = "wal") -> str:
    """The replication slot of `database` that the relay of `mode` reads (wal: ours; debezium:
    Debezium's). Slots are cluster-wide and several databases share a server (each worktree's tests,
    the bench's, the chaos run's), so the name holds the database's: lower case letters, digits and `_`
    only, with a checksum when it had to be changed or shortened."""
    cleaned = re.sub(r"[^a-z0-9_]", "_", database.lower())
    name = (DEBEZIUM_SLOT_PREFIX if mode == "debezium" else CAPTURE_SLOT_PREFIX) + cleaned
    if cleaned != database or len(name) > _SLOT_NAME_MAX:
        suffix = f"_{zlib.crc32(database.encode()):08x}"
        name = name[:_SLOT_NAME_MAX - len(suffix)] + suffix
    return name


def engine_slot_name(engine: Engine, mode: str = "wal") -> str:
    return capture_slot_name(engine.url.database or "", mode)


@dataclass(frozen=True)
class SlotStatus:
    name: str
    active: bool
    active_pid: int | None
    wal_status: str | None  # reserved, extended, unreserved or lost (invalidated: max_slot_wal_keep_size)
    confirmed_flush_lsn: str | None
    behind_bytes: int

    @property
    def lost(self) -> bool:
        return self.wal_status == "lost"


def capture_slot(engine: Engine, slot: str | None = None) -> SlotStatus | None:
    """The relay's slot of this database, None while none exists (a relay in wal mode creates it)."""
    slot = slot or engine_slot_name(engine)
    with engine.connect() as conn:
        row = conn.execute(_SLOT, {"slot": slot}).one_or_none()
    if row is None:
        return None
    return SlotStatus(row.slot_name, bool(row.active), row.active_pid, row.wal_status,
                      row.confirmed_flush_lsn, int(row.behind_bytes or 0))


def drop_slots_of_database(conn: Connection, database: str, *, only: str | None = None,
                           timeout_s: float = 10.0) -> list[str]:
    """Drop the replication slots of `database` (or only slot `only`), terminating the backend of an
    active one first; `conn` is an autocommit connection of a role with REPLICATION. A database with a
    slot cannot be dropped, and an unread slot retains WAL for ever."""
    import time

    dropped = []
    rows = conn.execute(text("SELECT slot_name FROM pg_replication_slots WHERE database = :db "
                             "AND (CAST(:only AS text) IS NULL OR slot_name = :only)"),
                        {"db": database, "only": only}).scalars().all()
    for slot in rows:
        deadline = time.monotonic() + timeout_s
        while True:
            pid = conn.execute(text("SELECT active_pid FROM pg_replication_slots WHERE slot_name = :s"),
                               {"s": slot}).scalar()
            if pid is None:
                break
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            if time.monotonic() > deadline:
                raise TimeoutError(f"replication slot {slot} stayed in use by process {pid}")
            time.sleep(0.05)
        conn.execute(text("SELECT pg_drop_replication_slot(:s)"), {"s": slot})
        dropped.append(slot)
    return dropped


def published_condition(engine: Engine, mode: str) -> tuple[str, dict[str, str]]:
    """SQL condition (with its parameters) of the `events` rows the relay of `mode` has published:
    marked ones, and in wal mode also those committed before it last caught up (see the top)."""
    if mode not in SLOT_MODES:
        return "published_at IS NOT NULL", {}
    return ("(published_at IS NOT NULL OR created_at < COALESCE((SELECT caught_up_at FROM outbox_capture "
            "WHERE slot_name = :capture_slot), '-infinity'))"), {
                "capture_slot": engine_slot_name(engine, mode)}


def outbox_lag(engine: Engine, mode: str) -> tuple[float, int]:
    """(age in seconds of the oldest unpublished event, number of unpublished events) as the relay of
    `mode` (RELAY_MODE) sees them; in wal mode "unpublished" means not yet captured (see the top)."""
    with engine.connect() as conn:
        if mode in SLOT_MODES:
            row = conn.execute(_WAL_LAG, {"slot": engine_slot_name(engine, mode)}).one()
        else:
            row = conn.execute(_LAG).one()
    return (float(row.lag_s) if row.lag_s is not None else 0.0), int(row.unpublished)


@dataclass(frozen=True)
class OutboxStatus:
    unpublished: int
    published: int
    oldest_unpublished_age_s: float


def outbox_status(engine: Engine, mode: str) -> OutboxStatus:
    """Backlog and retained history of the outbox; counting the retained rows scans them (ops only)."""
    lag_s, unpublished = outbox_lag(engine, mode)
    condition, params = published_condition(engine, mode)
    with engine.connect() as conn:
        published = int(conn.execute(text(f"SELECT count(*) FROM events WHERE {condition}"),
                                     params).scalar_one())
    return OutboxStatus(unpublished=unpublished, published=published, oldest_unpublished_age_s=lag_s)
