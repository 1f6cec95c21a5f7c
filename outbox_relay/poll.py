"""The relay in poll mode (RELAY_MODE=poll): it works on any PostgreSQL, at the price of an UPDATE per
published row and the partial index of unpublished rows. The wal mode (capture.py) backfills this way.

One batch (`PollRelay.relay_batch`):
 1. In one transaction, claim the oldest unpublished rows:
    `WHERE published_at IS NULL ORDER BY created_at, seq LIMIT n FOR UPDATE SKIP LOCKED`.
    The claim never uses `seq > last_seen`: a row whose transaction commits late (a sequence gap)
    is simply claimed by a later batch, because it is still unpublished.
 2. Produce each row (key = session id, value = the envelope, headers event_id/event_type) and
    serve delivery reports until every message of the batch has one.
 3. `UPDATE ... SET published_at = now()` for the rows whose report had no error, matched by their
    primary key `(id, created_at)` (the outbox is partitioned by `created_at`), and commit. Failed
    rows stay unpublished; the commit releases their locks.
A crash between 2 and 3 publishes the batch again on restart: at-least-once, consumers dedupe by
event id (the duplicate carries the same event id, key and body).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from app.core.db import PURGE_BATCH
from app.core.outbox import outbox_lag
from outbox_relay import partitions
from outbox_relay.messages import outgoing_of_row
from outbox_relay.relay import BatchResult, Relay, log

# The columns a message is spliced from, as PostgreSQL's text (the wal mode reads the same from the WAL):
# the payload is never parsed into Python objects and dumped again.
TEXT_COLUMNS = "id::text AS id_text, payload::text AS payload_text, created_at::text AS created_text"
# The commit time is known only with track_commit_timestamp on; else created_at stands for it.
_CLAIM = text(f"""
    SELECT id, aggregate_type, aggregate_id, event_type, version, created_at, traceparent, {TEXT_COLUMNS},
           CASE WHEN current_setting('track_commit_timestamp')::bool
                THEN pg_xact_commit_timestamp(xmin) END AS committed_at
    FROM events
    WHERE published_at IS NULL
    ORDER BY created_at, seq
    LIMIT :limit
    FOR UPDATE SKIP LOCKED""")
# The rows a promoted standby's new slot cannot prove published: inserted by a transaction at or
# above the fence (`age` compares 32-bit ids within the wraparound horizon; the retirement's test).
_CLAIM_FROM_FENCE = text(f"""
    SELECT id, aggregate_type, aggregate_id, event_type, version, created_at, {TEXT_COLUMNS}
    FROM events
    WHERE published_at IS NULL
      AND age(xmin) <= age(CAST(CAST(CAST(:fence AS bigint) % 4294967296 AS text) AS xid))
      AND age(xmin) > age(CAST(CAST(CAST(:until AS bigint) % 4294967296 AS text) AS xid))
    ORDER BY created_at, seq
    LIMIT :limit
    FOR UPDATE SKIP LOCKED""")
# By the whole primary key: `id` alone is not declared unique across partitions.
_MARK = text("""
    UPDATE events AS e SET published_at = now()
    FROM unnest(CAST(:ids AS uuid[]), CAST(:created AS timestamptz[])) AS d(id, created_at)
    WHERE e.id = d.id AND e.created_at = d.created_at""")


def _mark(conn: Connection, keys: list[tuple[Any, Any]]) -> None:
    """Mark the rows of these `(id, created_at)` keys published."""
    conn.execute(_MARK, {"ids": [k[0] for k in keys], "created": [k[1] for k in keys]})


def purge_published(engine: Engine, retention_hours: float, *, batch: int = PURGE_BATCH,
                    max_batches: int = 20, stopping: Callable[[], bool] = lambda: False) -> int:
    """Drop the partitions past the retention whose rows are all published, then delete the default
    partition's published rows past it row by row; returns the rows deleted from the default partition."""
    partitions.drop_expired_partitions(engine, retention_hours, stopping=stopping)
    return partitions.purge_default_partition(engine, retention_hours, batch=batch, max_batches=max_batches,
                                              stopping=stopping)


class PollRelay(Relay):
    """Claims, produces and marks outbox rows."""

    mode = "poll"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Delivered, but the mark failed with the connection: marked first thing after reconnecting.
        self._delivered_unmarked: list[tuple[Any, Any]] = []
        # Set: claim only the rows of the transactions from the first id up to the second (capture.py).
        self.claim_fence: tuple[int, int] | None = None

    def relay_batch(self) -> BatchResult:
        """Claim, produce and mark one batch. Raises on PostgreSQL errors (nothing is marked then)."""
        conn = self._connection()
        try:
            if self._delivered_unmarked:
                with conn.begin():
                    _mark(conn, self._delivered_unmarked)
                self._delivered_unmarked = []
            with conn.begin():
                if self.claim_fence is None:
                    rows = conn.execute(_CLAIM, {"limit": self.batch_size}).all()
                else:
                    fence, until = self.claim_fence
                    rows = conn.execute(_CLAIM_FROM_FENCE,
                                        {"limit": self.batch_size, "fence": fence, "until": until}).all()
                if not rows:
                    return BatchResult(0, 0, 0)
                delivered, failed = self._produce(map(outgoing_of_row, rows))
                if delivered:
                    if self.before_mark is not None:
                        self.before_mark([key[0] for key in delivered])
                    self._delivered_unmarked = delivered
                    _mark(conn, delivered)
            self._delivered_unmarked = []
        except (DBAPIError, SQLAlchemyError):
            self._drop_connection()
            raise
        self.stats.record_batch(len(rows), len(delivered))
        self._report_failures(failed, len(rows))
        return BatchResult(len(rows), len(delivered), len(failed), more=len(rows) >= self.batch_size)

    def _record_lag(self) -> None:
        self.stats.record_lag(*outbox_lag(self.engine, self.mode))

    def _retire(self) -> None:
        """Retention: drop what is old and published."""
        deleted = purge_published(self.engine, self.retention_hours, stopping=lambda: self.shutting_down)
        if deleted:
            log.info("deleted %d published events of the default partition older than %g h",
                     deleted, self.retention_hours)
