"""Upkeep of the partitioned outbox (migration 0005): partitions made ahead, old ones dropped whole.

`events` is partitioned by day on `created_at` (`events_pYYYYMMDD`, UTC days) with a default
partition `events_default` for rows outside them. The relay's housekeeping calls, every
PURGE_EVERY_S on the leader:

- `ensure_partitions`: today's partition and the next `days_ahead` (SQL function
  `events_ensure_partitions`, which skips existing ones), so inserts land in a daily partition even
  if the relay is down for `days_ahead` days; past that they go to the default partition, never fail.
- `drop_expired_partitions`: each partition whose upper bound is older than the retention is dropped
  whole, in one short transaction per partition that
    1. sets a short lock_timeout (a busy table fails this round instead of queueing inserts),
    2. locks `ONLY events` then the partition in ACCESS EXCLUSIVE mode (parent first, the order every
       query through `events` takes, so no deadlock; DROP needs the parent's lock anyway),
    3. checks, under those locks, that the partition holds no unpublished row,
    4. drops it, or, when an unpublished row is there, logs and keeps it: that row is the relay's
       to publish, and a later round drops the partition once it is published.
  Because nothing can insert, update or claim a row of the partition between 2 and 4, an unpublished
  row is never dropped, whatever the relay or the app do meanwhile.
- `purge_default_partition`: the default partition keeps the old row-by-row delete (published rows
  older than the retention, in batches), since it cannot be dropped.

A published row is thus kept at least RELAY_RETENTION_HOURS after its day ended (up to a day more
than the retention), which is what `ops replay` can send again.

In wal mode (outbox_relay/capture.py) no row is ever marked, and whether a row was captured is a
matter of WAL positions, not of a column. `retire_captured` then works in two steps:
- `detach_for_capture`: an expired partition is detached from `events` under the same two locks, and
  the WAL position read under them is written into the detached table's comment (its fence). Every
  insert into the partition committed before that position, and none can come after it (the table
  is no longer reachable through `events`).
- `drop_captured`: a detached table is dropped once the relay's slot has confirmed a position at or
  past its fence, i.e. once every row of it was decoded and acknowledged by Kafka. Until then it is
  kept and a warning names it. (The WAL the slot retains still holds those rows' inserts, so the
  capture does not need the table; keeping it keeps the rows for recovery and `ops replay`.)
- The default partition: rows past the retention whose inserting transaction had ended when the
  relay last read its slot to the end are deleted (`xmin` older than the oldest transaction then
  running, `RetireFence`), row by row as in poll mode.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

log = logging.getLogger("outbox_relay")

DEFAULT_PARTITION = "events_default"
DROP_LOCK_TIMEOUT_MS = 1000
# The comment of a partition detached in wal mode, followed by the WAL position of its fence.
DETACHED_COMMENT = "outbox relay: detached at WAL "

_ENSURE = text("""
    SELECT events_ensure_partitions((now() AT TIME ZONE 'UTC')::date,
                                    (now() AT TIME ZONE 'UTC')::date + CAST(:days_ahead AS integer))""")
# Partitions of `events` with their upper bounds, oldest first; the default partition has none.
_PARTITIONS = text("""
    SELECT relname, upper_bound FROM (
        SELECT c.relname,
               substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \\(''([^'']+)''\\)')::timestamptz
                   AS upper_bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'events'::regclass) p
    WHERE upper_bound IS NOT NULL
    ORDER BY upper_bound""")
_PURGE_DEFAULT = text(f"""
    DELETE FROM {DEFAULT_PARTITION} WHERE (id, created_at) IN (
        SELECT id, created_at FROM {DEFAULT_PARTITION}
        WHERE published_at IS NOT NULL AND published_at < now() - make_interval(secs => :age_s)
        ORDER BY published_at
        LIMIT :limit)""")


@dataclass(frozen=True)
class Partition:
    name: str
    upper_bound: datetime


@dataclass
class RetentionResult:
    dropped: list[str] = field(default_factory=list)
    kept_unpublished: list[str] = field(default_factory=list)  # old enough, but holding unpublished rows
    busy: list[str] = field(default_factory=list)  # the lock was not granted within DROP_LOCK_TIMEOUT_MS
    default_deleted: int = 0  # rows deleted from the default partition (wal mode)


def ensure_partitions(engine: Engine, days_ahead: int) -> int:
    """Create the missing partitions of today (UTC) through today + `days_ahead` (at least 1: a day's
    partition must exist before its first row, or that day's rows go to the default partition, which
    then forbids the day's partition); returns how many were created."""
    try:
        with engine.begin() as conn:
            conn.execute(text(f"SET LOCAL lock_timeout = {DROP_LOCK_TIMEOUT_MS}"))
            created = int(conn.execute(_ENSURE, {"days_ahead": max(days_ahead, 1)}).scalar_one())
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available: next round
            raise
        log.info("events is busy: creating its partitions ahead next round")
        return 0
    if created:
        log.info("created %d partitions of events ahead", created)
    return created


def partitions(engine: Engine) -> list[Partition]:
    """The range partitions of `events`, oldest first (not the default partition)."""
    with engine.connect() as conn:
        return [Partition(r.relname, r.upper_bound) for r in conn.execute(_PARTITIONS)]


def expired_partitions(engine: Engine, retention_hours: float) -> list[Partition]:
    """Partitions whose every row was created more than `retention_hours` ago."""
    with engine.connect() as conn:
        now = conn.execute(text("SELECT now()")).scalar_one()
    horizon = now.timestamp() - retention_hours * 3600.0
    return [p for p in partitions(engine) if p.upper_bound.timestamp() <= horizon]


def drop_partition_if_published(engine: Engine, name: str) -> bool | None:
    """Drop partition `name` if it holds no unpublished row: True when dropped, False when kept for an
    unpublished row, None when its lock was not granted in time (try again later)."""
    quoted = '"' + name.replace('"', '""') + '"'
    try:
        with engine.begin() as conn:
            conn.execute(text(f"SET LOCAL lock_timeout = {DROP_LOCK_TIMEOUT_MS}"))
            conn.execute(text("LOCK TABLE ONLY events IN ACCESS EXCLUSIVE MODE"))
            conn.execute(text(f"LOCK TABLE {quoted} IN ACCESS EXCLUSIVE MODE"))
            unpublished = conn.execute(text(
                f"SELECT EXISTS (SELECT 1 FROM {quoted} WHERE published_at IS NULL)")).scalar_one()
            if unpublished:
                return False
            conn.execute(text(f"ALTER TABLE events DETACH PARTITION {quoted}"))
            conn.execute(text(f"DROP TABLE {quoted}"))
            return True
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
            return None
        raise


def drop_expired_partitions(engine: Engine, retention_hours: float, *,
                            stopping: Callable[[], bool] = lambda: False) -> RetentionResult:
    """Drop every partition older than the retention that holds no unpublished row, one at a time."""
    result = RetentionResult()
    for partition in expired_partitions(engine, retention_hours):
        if stopping():
            break
        outcome = drop_partition_if_published(engine, partition.name)
        if outcome is True:
            result.dropped.append(partition.name)
            log.info("dropped partition %s (rows created before %s, all published)",
                     partition.name, partition.upper_bound.isoformat())
        elif outcome is False:
            result.kept_unpublished.append(partition.name)
            log.warning("partition %s is past the retention but holds unpublished events: kept until they "
                        "are published", partition.name)
        else:
            result.busy.append(partition.name)
            log.info("partition %s is in use: dropping it next round", partition.name)
    return result


def purge_default_partition(engine: Engine, retention_hours: float, *, batch: int, max_batches: int,
                            stopping: Callable[[], bool] = lambda: False) -> int:
    """Delete published rows of the default partition older than the retention, `batch` rows per short
    transaction: the one place rows are still deleted one by one."""
    deleted = 0
    for _ in range(max_batches):
        with engine.begin() as conn:
            count = conn.execute(_PURGE_DEFAULT, {"age_s": retention_hours * 3600.0, "limit": batch}).rowcount
        deleted += count
        if count < batch or stopping():
            break
    return deleted


# --- wal mode: retention by WAL position ----------------------------------------------------------

_DETACHED = text("""
    SELECT c.relname, substr(d.description, length(:prefix) + 1) AS fence
    FROM pg_class c
    JOIN pg_description d ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
    WHERE c.relkind = 'r' AND NOT c.relispartition AND c.relnamespace = current_schema()::regnamespace
      AND starts_with(d.description, :prefix)
    ORDER BY c.relname""")
_CAPTURED_PAST = text("""
    SELECT confirmed_flush_lsn >= CAST(:fence AS pg_lsn) FROM pg_replication_slots WHERE slot_name = :slot""")
_PURGE_DEFAULT_CAPTURED = text(f"""
    DELETE FROM {DEFAULT_PARTITION} WHERE (id, created_at) IN (
        SELECT id, created_at FROM {DEFAULT_PARTITION}
        WHERE created_at < now() - make_interval(secs => :age_s)
          AND age(xmin) > age(CAST(CAST(CAST(:xmin AS bigint) % 4294967296 AS text) AS xid))
        LIMIT :limit)""")


@dataclass(frozen=True)
class RetireFence:
    """A moment the relay had read its slot to the end: every transaction older than `xmin` (the oldest
    then running, an xid8) had committed before WAL position `lsn`."""

    lsn: str
    xmin: int


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def detach_for_capture(engine: Engine, name: str) -> str | None:
    """Detach partition `name` and write its fence into its comment; returns the fence, or None when
    its lock was not granted in time (try again later)."""
    quoted = _quoted(name)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"SET LOCAL lock_timeout = {DROP_LOCK_TIMEOUT_MS}"))
            conn.execute(text("LOCK TABLE ONLY events IN ACCESS EXCLUSIVE MODE"))
            conn.execute(text(f"LOCK TABLE {quoted} IN ACCESS EXCLUSIVE MODE"))
            conn.execute(text(f"ALTER TABLE events DETACH PARTITION {quoted}"))
            fence = conn.execute(text("SELECT pg_current_wal_lsn()::text")).scalar_one()
            conn.execute(text(f"COMMENT ON TABLE {quoted} IS '{DETACHED_COMMENT}{fence}'"))
            return fence
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
            return None
        raise


def detached_partitions(engine: Engine) -> list[tuple[str, str]]:
    """(name, fence) of the partitions detached in wal mode and not dropped yet."""
    with engine.connect() as conn:
        return [(r.relname, r.fence) for r in conn.execute(_DETACHED, {"prefix": DETACHED_COMMENT})]


def captured_past(engine: Engine, slot: str, lsn: str) -> bool:
    """Whether the slot has confirmed (decoded, delivered, advanced) everything committed before `lsn`."""
    with engine.connect() as conn:
        return bool(conn.execute(_CAPTURED_PAST, {"slot": slot, "fence": lsn}).scalar())


def retire_captured(engine: Engine, retention_hours: float, slot: str, fence: RetireFence | None, *,
                    batch: int, max_batches: int,
                    stopping: Callable[[], bool] = lambda: False) -> RetentionResult:
    """Wal mode's retention (see the top): detach the expired partitions, drop the detached ones the slot
    has passed, and delete captured rows of the default partition past the retention."""
    result = RetentionResult()
    for partition in expired_partitions(engine, retention_hours):
        if stopping():
            return result
        if detach_for_capture(engine, partition.name) is None:
            result.busy.append(partition.name)
            log.info("partition %s is in use: detaching it next round", partition.name)
        else:
            log.info("detached partition %s (rows created before %s); dropped once captured",
                     partition.name, partition.upper_bound.isoformat())
    for name, lsn in detached_partitions(engine):
        if stopping():
            return result
        if captured_past(engine, slot, lsn):
            with engine.begin() as conn:
                conn.execute(text(f"DROP TABLE {_quoted(name)}"))
            result.dropped.append(name)
            log.info("dropped partition %s: every event of it was captured", name)
        else:
            result.kept_unpublished.append(name)
            log.warning("partition %s is past the retention but the relay's slot has not captured it whole "
                        "(up to WAL %s): kept until it has", name, lsn)
    if fence is not None and captured_past(engine, slot, fence.lsn):
        for _ in range(max_batches):
            with engine.begin() as conn:
                count = conn.execute(_PURGE_DEFAULT_CAPTURED, {"age_s": retention_hours * 3600.0,
                                                               "limit": batch, "xmin": fence.xmin}).rowcount
            result.default_deleted += count
            if count < batch or stopping():
                break
    return result
