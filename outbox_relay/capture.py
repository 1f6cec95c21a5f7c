"""The relay in wal mode (RELAY_MODE=wal, the default): change-data capture of the outbox from
PostgreSQL's WAL through a logical replication slot, as Debezium's outbox pattern does.

Writers only insert `events` rows in their transactions; nothing marks them. One batch
(`WalRelay.relay_batch`, on the leader's connection):
 1. Read the WAL flush position F, the time, and the oldest running transaction (in one statement),
    then `pg_logical_slot_peek_binary_changes(slot, NULL, batch_size, pgoutput options)`: the
    committed inserts into `events` since the slot's confirmed position, whole transactions in commit
    order (outbox_relay/pgoutput.py decodes them). Peek, not get: reading moves nothing.
 2. Produce every event of those transactions as it is read (the rows stream from the server, so a
    transaction of a million events is never held whole; the same envelope, key and headers as the
    polling relay, `Relay._produce`) and serve delivery reports until each has one.
 3. `pg_replication_slot_advance(slot, P)`, P = the end of the last transaction all of whose events
    were acknowledged (and nothing after a transaction with a failed delivery). When the peek
    returned fewer rows than asked (it read the WAL to its end) and all was delivered, P = F: the WAL
    written since by other databases of the cluster, or by transactions without events, is passed
    too, so the slot retains little WAL and the next peek decodes little. Then, at most once a
    second, `outbox_capture.caught_up_at` records that every event committed before that time is on
    Kafka (the backlog the web and `ops` report, app/core/outbox.py), when anything was captured
    since the last record.
With RELAY_WAL_READ=stream the slot is read over the replication protocol instead of peeked
(outbox_relay/slot_stream.py, `StreamingWalRelay`): the same batches and promises, decoded once by a
walsender, the slot confirmed by its status updates. Everything below holds for both.
A crash between 2 and 3 leaves the slot where it was: the restarted relay reads the same
transactions again and publishes them again with the same event ids (at-least-once; consumers
dedupe by event id). A transaction is never split: the slot only moves past whole transactions.

Why pgoutput and not test_decoding: the publication (migration 0006) filters on the server
(inserts into `events` only, so the polling mode's UPDATEs, other tables and DDL never reach us) and
names the root table whatever daily partition the row went to; values arrive as the columns' text,
typed by the column names of the Relation message, with no quoting to undo.

Order. Transactions arrive in commit order and the producer is idempotent, so a session's (or a
board's) events reach its partition in commit order, a stricter order than the polling relay's.
Only one process may read a slot at a time (a second gets "replication slot ... is active"), and
the advisory-lock leader election of `Relay` already makes one relay the reader; standbys wait.

The slot is named after the database (`app.core.outbox.capture_slot_name`: slots are
cluster-wide and several databases share a server) and created by the leader when missing. A slot
sees the transactions that commit after its creation only, so the relay then backfills: it publishes
the rows never marked published the polling relay's way (claim, produce, mark; `_backfill`) before
its first peek. That covers writers that started before the relay, a switch from poll mode, and a
slot dropped and made again. A row committed around the creation may be published by both (same
event id). The backfill is done once `outbox_capture` holds the slot's row, so a crash resumes it.

WAL retention. An unread slot keeps WAL from being recycled. With `max_slot_wal_keep_size` set, a
slot too far behind is invalidated (`wal_status = lost`) and cannot be read again: the relay then logs
an error every interval and publishes nothing, since events could have been lost from the WAL. Recover
with `flask ops relay-slot drop`: the relay makes a fresh slot and backfills, i.e. publishes every row
of the retained outbox again (in wal mode none is marked; consumers dedupe by event id). The stack
leaves `max_slot_wal_keep_size` unlimited: a slot is never invalidated, at the price of disk while the
relay is down; `ops relay-slot` shows how far behind it is, and a stale slot of a database no longer
relayed must be dropped (`flask ops relay-slot drop`).

Retention of the outbox rows: partitions past RELAY_RETENTION_HOURS are detached, then dropped once
the slot has passed them (outbox_relay/partitions.py, `retire_captured`).
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
from confluent_kafka import KafkaError, KafkaException
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from app.core.db import PURGE_BATCH
from app.core.outbox import CAPTURE_PUBLICATION, capture_slot, engine_slot_name, outbox_lag
from outbox_relay import partitions
from outbox_relay.messages import Outgoing, event_reader
from outbox_relay.pgoutput import Decoder, Transaction, acknowledged_end, int_to_lsn, lsn_to_int
from outbox_relay.poll import PollRelay
from outbox_relay.relay import BatchResult, log

PLUGIN = "pgoutput"
CAUGHT_UP_EVERY_S = 1.0  # the fastest the relay records that it caught up (a row update) while events flow
# Rows of a peek fetched at a time: a transaction of a million events streams through the producer.
STREAM_ROWS = 2000

# The WAL head and the oldest running transaction: xmin's snapshot is taken as the statement starts, so a
# transaction below it had ended, its commit flushed, before the position is read. The pair is the relay's
# fence (the partitions' retirement; in outbox_capture, the republish after a failover).
HEAD = text("SELECT pg_current_wal_flush_lsn()::text AS lsn, clock_timestamp() AS at, "
            "pg_snapshot_xmin(pg_current_snapshot())::text AS xmin")
# Read through psycopg's own server-side cursor in binary: the bytea arrive as they are (not as hex text),
# a few thousand rows a round trip, with no per-row work of SQLAlchemy's.
_PEEK = f"""
    SELECT data FROM pg_logical_slot_peek_binary_changes(
        %(slot)s, NULL, %(limit)s, 'proto_version', '1', 'publication_names', '{CAPTURE_PUBLICATION}')"""
_ADVANCE = text("""
    SELECT pg_replication_slot_advance(slot_name, GREATEST(CAST(:lsn AS pg_lsn), confirmed_flush_lsn))
    FROM pg_replication_slots WHERE slot_name = :slot""")
_SLOT_ROW = text("""
    SELECT wal_status, confirmed_flush_lsn::text AS confirmed, database = current_database() AS ours
    FROM pg_replication_slots WHERE slot_name = :slot""")
_CAPTURE_ROW = text("SELECT caught_up_at FROM outbox_capture WHERE slot_name = :slot")
_FORGET_CAPTURE = text("DELETE FROM outbox_capture WHERE slot_name = :slot")
# No slot but a capture row (replicated; the slot is not): a promoted standby. Its fence is kept as the
# republish's, until the republish is done.
FENCE_TO_REPUBLISH = text("""
    UPDATE outbox_capture SET republish_from = COALESCE(republish_from, caught_up_xmin)
    WHERE slot_name = :slot AND caught_up_xmin IS NOT NULL RETURNING republish_from""")
# The timeline this server writes (a promotion starts a new one), from the name of its current WAL file.
_TIMELINE = "('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"
SLOT_TIMELINE = text(f"SELECT slot_timeline, {_TIMELINE} AS now FROM outbox_capture WHERE slot_name = :slot")
# Set when the slot is made (`force`), else only where not known yet (a capture row of an older relay).
RECORD_TIMELINE = text(f"""
    UPDATE outbox_capture SET slot_timeline = CASE WHEN :force THEN {_TIMELINE}
                                                   ELSE COALESCE(slot_timeline, {_TIMELINE}) END
    WHERE slot_name = :slot""")
_DROP_SLOT = text("SELECT pg_drop_replication_slot(:slot)")
REPUBLISHED = text("UPDATE outbox_capture SET republish_from = NULL, republish_until = NULL "
                    "WHERE slot_name = :slot")
# Once the slot exists: the first transaction id not given out yet. A transaction from it on commits after
# the slot's consistent point, so the slot decodes it; the republish stops below it.
REPUBLISH_WINDOW = text("""
    UPDATE outbox_capture
    SET republish_until = COALESCE(republish_until, pg_snapshot_xmax(pg_current_snapshot())::text::bigint)
    WHERE slot_name = :slot AND republish_from IS NOT NULL
    RETURNING republish_from, republish_until""")
CAUGHT_UP = text("""
    INSERT INTO outbox_capture (slot_name, caught_up_at, caught_up_xmin) VALUES (:slot, :at, :xmin)
    ON CONFLICT (slot_name) DO UPDATE
    SET caught_up_at = GREATEST(outbox_capture.caught_up_at, EXCLUDED.caught_up_at),
        caught_up_xmin = GREATEST(outbox_capture.caught_up_xmin, EXCLUDED.caught_up_xmin)""")


class CaptureUnavailable(RuntimeError):
    """This database cannot be read by logical decoding (wal_level, privilege): use RELAY_MODE=poll."""


def check_capture_possible(conn: Connection) -> None:
    """Raise CaptureUnavailable when this server or role cannot decode the WAL."""
    row = conn.execute(text("""
        SELECT current_setting('wal_level') AS wal_level,
               (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user) AS may"""
    )).one()
    if row.wal_level != "logical":
        raise CaptureUnavailable(f"wal_level is {row.wal_level}, not logical")
    if not row.may:
        raise CaptureUnavailable("the database role lacks the REPLICATION privilege")


class WalRelay(PollRelay):
    """Reads committed events from the slot, produces them, and advances the slot past what Kafka
    acknowledged (see the top); everything else is `Relay`'s, and its backfill is poll mode's batch."""

    mode = "wal"

    def __init__(self, *args: Any, slot: str | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.slot = slot or engine_slot_name(self.engine)
        self._slot_checked = False
        self._confirmed = 0
        self._last_caught_up = 0.0
        self._captured_unrecorded = True  # a new process records once
        self._fence: partitions.RetireFence | None = None

    # -- the slot ------------------------------------------------------------------------------

    def ensure_slot(self, conn: Connection) -> bool:
        """Create the slot if missing (True when created) and finish its backfill; raise when it was
        invalidated."""
        row = conn.execute(_SLOT_ROW, {"slot": self.slot}).one_or_none()
        conn.commit()
        if row is not None and row.ours and self._drop_if_of_another_timeline(conn):
            row = None
        created = False
        if row is None:
            check_capture_possible(conn)
            fence = conn.execute(FENCE_TO_REPUBLISH, {"slot": self.slot}).scalar_one_or_none()
            if fence is None:
                conn.execute(_FORGET_CAPTURE, {"slot": self.slot})  # a new slot: its backfill is to do
            else:
                log.warning("no replication slot %s but its capture row (a new PostgreSQL leader): "
                            "republishing the events from transaction %s on", self.slot, fence)
            conn.commit()
            try:
                conn.execute(text("SELECT pg_create_logical_replication_slot(:slot, :plugin)"),
                             {"slot": self.slot, "plugin": PLUGIN})
                conn.commit()
                conn.execute(RECORD_TIMELINE, {"slot": self.slot, "force": True})
                conn.commit()
                created = True
                log.info("created replication slot %s: events committed from now on are captured", self.slot)
            except DBAPIError as exc:
                conn.rollback()
                if getattr(exc.orig, "sqlstate", None) != "42710":  # made meanwhile by another relay
                    raise
            row = conn.execute(_SLOT_ROW, {"slot": self.slot}).one()
            conn.commit()
        if not row.ours:
            raise CaptureUnavailable(f"replication slot {self.slot} belongs to another database")
        if row.wal_status == "lost":
            raise SlotLost(self.slot)
        backfilled = conn.execute(_CAPTURE_ROW, {"slot": self.slot}).one_or_none() is not None
        conn.commit()
        if not backfilled and not self._backfill(conn):
            return created  # stopping mid-backfill: the next start resumes it, the slot is not read before
        window = conn.execute(REPUBLISH_WINDOW, {"slot": self.slot}).one_or_none()
        conn.commit()
        if window is not None and not self._republish(conn, window.republish_from, window.republish_until):
            return created
        conn.execute(RECORD_TIMELINE, {"slot": self.slot, "force": False})  # a new deployment's first slot
        conn.commit()
        self._confirmed = lsn_to_int(row.confirmed) if row.confirmed else 0
        self._slot_checked = True
        return created

    def _drop_if_of_another_timeline(self, conn: Connection) -> bool:
        """Drop the slot (True) when the capture row (replicated) says it was made on another timeline: a
        former leader promoted again offers its old slot (see migration 0012); it is made again below."""
        recorded = conn.execute(SLOT_TIMELINE, {"slot": self.slot}).one_or_none()
        conn.commit()
        if recorded is None or recorded.slot_timeline is None or recorded.slot_timeline == recorded.now:
            return False
        log.warning("replication slot %s was made on timeline %s, this leader writes timeline %s (a former "
                    "leader promoted again): dropping it", self.slot, recorded.slot_timeline, recorded.now)
        conn.execute(_DROP_SLOT, {"slot": self.slot})
        conn.commit()
        return True

    def _backfill(self, conn: Connection) -> bool:
        """Publish the rows committed before the slot existed, as the polling relay does (claim, produce,
        mark): a slot made after the first events (a new deployment whose writers started first, a switch
        from poll mode, a slot dropped after it was invalidated) would otherwise never see them. Rows
        committed meanwhile are in both, published twice with the same id. Finished when
        `outbox_capture` has the slot's row, so a crash resumes it; False when stopped before."""
        log.info("backfill of slot %s: publishing the outbox rows never marked published", self.slot)
        total = 0
        while True:
            result = super().relay_batch()  # poll mode's claim, produce and mark
            total += result.published
            if result.failed:
                raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT, "backfill deliveries failed"))
            if not result.claimed:
                break
            if self.shutting_down:
                return False
        with conn.begin():
            conn.execute(CAUGHT_UP,
                         {"slot": self.slot, "at": datetime.min.replace(tzinfo=UTC), "xmin": None})
        log.info("backfill of slot %s done: %d events published", self.slot, total)
        return True

    def _republish(self, conn: Connection, fence: int, until: int) -> bool:
        """After a failover: publish the rows inserted by a transaction at or above `fence` (the last
        caught-up record's oldest running one) and below `until` (the slot decodes those from it on),
        the polling way, marking them, and count them
        (`relay_failover_republished_total`); rows the new slot decodes too go out twice, same id.
        False when stopped before the end (the next start resumes from the same fence)."""
        total = 0
        self.claim_fence = (fence, until)
        try:
            while True:
                result = super().relay_batch()
                total += result.published
                if result.failed:
                    raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT, "republish deliveries failed"))
                if not result.claimed:
                    break
                if self.shutting_down:
                    return False
        finally:
            self.claim_fence = None
            self.stats.record_failover_republished(total)
        with conn.begin():
            conn.execute(REPUBLISHED, {"slot": self.slot})
        log.warning("republished %d events of slot %s from transaction %s on", total, self.slot, fence)
        return True

    def _drop_connection(self) -> None:
        super()._drop_connection()
        self._slot_checked = False

    # -- one batch -----------------------------------------------------------------------------

    def relay_batch(self) -> BatchResult:
        """Peek, produce and advance one batch. Raises on PostgreSQL errors (the slot stays then)."""
        conn = self._connection()
        transactions: list[Transaction] = []
        read = 0
        failed: list[str] = []
        acknowledged: Counter[int] = Counter()
        try:
            if not self._slot_checked:
                self.ensure_slot(conn)
                if not self._slot_checked:
                    return BatchResult(0, 0, 0)
            with conn.begin():
                head = conn.execute(HEAD).one()
                cursor = conn.connection.driver_connection.cursor(name="outbox_peek", binary=True)

                def events() -> Iterator[Outgoing]:
                    """The events as they are read; the transactions they belong to are counted meanwhile."""
                    nonlocal read
                    event_of = event_reader(Decoder(), transactions)
                    cursor.execute(_PEEK, {"slot": self.slot, "limit": self.batch_size})
                    while rows := cursor.fetchmany(STREAM_ROWS):
                        read += len(rows)
                        for (message,) in rows:
                            if (event := event_of(message)) is not None:
                                yield event

                with cursor:
                    delivered, failed = self._produce(events())
                acknowledged.update(delivered)
            complete = read < self.batch_size  # the peek read the WAL to its end
            target, whole = acknowledged_end(transactions, acknowledged)
            caught_up = whole and complete
            if caught_up:
                target = max(target, lsn_to_int(head.lsn))
            if target > self._confirmed:
                if delivered and self.before_mark is not None:
                    self.before_mark([target])
                with conn.begin():
                    conn.execute(_ADVANCE, {"slot": self.slot, "lsn": int_to_lsn(target)})
                self._confirmed = target
            self._captured_unrecorded |= bool(transactions)
            if caught_up:
                self._caught_up(conn, head, captured=bool(transactions))
        except (DBAPIError, SQLAlchemyError, psycopg.Error):
            self._drop_connection()
            raise
        return self._batch_result(transactions, acknowledged, failed, more=not complete)

    def _batch_result(self, transactions: list[Transaction], acknowledged: Counter[int], failed: list[str],
                      *, more: bool) -> BatchResult:
        """A batch's figures (its stats recorded and its failures reported when it captured anything)."""
        captured, published = sum(t.inserts for t in transactions), sum(acknowledged.values())
        if transactions:
            self.stats.record_batch(captured, published)
            self._report_failures(failed, captured)
        return BatchResult(captured, published, len(failed), more=more)

    def _caught_up(self, conn: Connection, head: Any, *, captured: bool) -> None:
        """Every transaction that committed before `head` (a HEAD row) is on Kafka: the retirement's fence
        moves there, and `outbox_capture` records it once something was captured since the last record
        (else the backlog it implies is unchanged): while events flow (`captured`) at most every
        CAUGHT_UP_EVERY_S, idle at once."""
        self._fence = partitions.RetireFence(head.lsn, int(head.xmin))
        now = time.monotonic()
        if self._captured_unrecorded and (not captured or now - self._last_caught_up >= CAUGHT_UP_EVERY_S):
            with conn.begin():
                conn.execute(CAUGHT_UP, {"slot": self.slot, "at": head.at, "xmin": int(head.xmin)})
            self._last_caught_up = now
            self._captured_unrecorded = False

    def _run_once(self) -> None:
        """`Relay._run_once`, and a slot that cannot be read is an error logged every interval, not a crash:
        the standby relays and the operator's `ops relay-slot` keep working meanwhile."""
        try:
            super()._run_once()
        except (SlotLost, CaptureUnavailable) as exc:
            self._errors.warning("slot", "cannot capture the outbox: %s", exc)
            log.error("cannot capture the outbox: %s", exc)
            self.wait(self._outage_backoff.next_delay())

    # -- housekeeping --------------------------------------------------------------------------

    def _record_lag(self) -> None:
        lag_s, pending = outbox_lag(self.engine, self.mode)
        status = capture_slot(self.engine, self.slot)
        if status is not None and status.lost:
            log.error("replication slot %s was invalidated (max_slot_wal_keep_size): events may be missing "
                      "from the WAL; see outbox_relay/capture.py for the recovery", self.slot)
        self.stats.record_lag(lag_s, pending, status.behind_bytes if status is not None else 0)

    def _retire(self) -> None:
        result = partitions.retire_captured(self.engine, self.retention_hours, self.slot, self._fence,
                                            batch=PURGE_BATCH, max_batches=20,
                                            stopping=lambda: self.shutting_down)
        if result.default_deleted:
            log.info("deleted %d captured events of the default partition older than %g h",
                     result.default_deleted, self.retention_hours)


class SlotLost(RuntimeError):
    """The slot was invalidated: WAL it needed is gone, so events may be missing (see the top)."""

    def __init__(self, slot: str):
        super().__init__(f"replication slot {slot} was invalidated (wal_status lost): events may be missing "
                         "from the WAL; drop it (flask ops relay-slot drop): a new slot backfills the "
                         "retained outbox")
