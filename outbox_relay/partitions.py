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
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from collections.abc import Callable

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

log = logging.getLogger("outbox_relay")

DEFAULT_PARTITION = "events_default"
DROP_LOCK_TIMEOUT_MS = 1000

_ENSURE = text("""
    SELECT events_ensure_partitions((now() AT TIME ZONE 'UTC')::date,
                                    (now() AT TIME ZONE 'UTC')::date + CAST(:days_ahead AS integer))""")
# Partitions of `events` with their upper bounds, oldest first; the default partition has none.
_PARTITIONS = text("""
    SELECT relname, upper_bound FROM (
        SELECT c.relname,
               substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \\(''([^'']+)''\\)')::timestamptz AS upper_bound
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
