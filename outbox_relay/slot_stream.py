"""The wal relay reading its slot over the replication protocol (RELAY_WAL_READ=stream): one walsender
decodes the slot's WAL once and sends the transactions as they commit (outbox_relay/replication.py),
where a peek (capture.py, `WalRelay`) makes PostgreSQL decode the WAL again from the slot's restart point
at every batch (docs/performance.md: more PostgreSQL CPU per answer than the answer's own transaction,
and decoding and producing one after the other). Everything else is `WalRelay`'s: the slot, its
backfill and the republish after a failover (all done before the stream opens), the envelopes,
producing, retention and metrics.

One batch (`StreamingWalRelay.relay_batch`), with a peek batch's promises:
 1. Read the WAL head F, the time and the oldest running transaction (capture.HEAD), as a peek batch does.
 2. Produce the events of the transactions the stream sends, as they arrive, until the batch has read
    RELAY_BATCH_SIZE messages at a transaction's end, or the stream has passed F at a transaction's end
    (a commit ending at or past F, or a keepalive saying the walsender decoded that far, every message
    before it read: when nothing is left to read the relay asks for one). So a batch is what committed
    before it began, at most RELAY_BATCH_SIZE messages, as a peek's.
 3. Once Kafka acknowledged the batch, confirm (a standby status update, sent at once) the end of the
    last transaction every event of which was acknowledged, or the latest keepalive's position when all
    was: the slot's `confirmed_flush_lsn`. A transaction with a failed delivery, or any error, ends the
    stream: the next batch opens it again from the confirmed position and produces what came after
    again (at-least-once, as the next peek would).
 4. Caught up (F passed, all acknowledged): the retirement's fence and `outbox_capture`'s record, as in
    peek mode (`WalRelay._caught_up`: the failover's fence).
A crash, or a lost connection (the relay retries as from any PostgreSQL outage): the slot holds what was
confirmed, and a new stream starts from it (or from the position this relay knows acknowledged, when
later), so what came after is published again with the same event ids. Between batches the relay waits
on the stream itself (no LISTEN): a committed transaction's first message wakes it. While deliveries are
awaited (a slow or down Kafka), status updates still go out every STATUS_EVERY_S, so
`wal_sender_timeout` does not end the stream. On stopping: a last status update, the end of the
connection, then a wait (STOP_GRACE_S at most) until the walsender has let the slot go, so the slot has
the last confirmed position and the next leader can open it at once.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from app.core.outbox import CAPTURE_PUBLICATION
from outbox_relay.capture import HEAD, WalRelay
from outbox_relay.listener import libpq_url
from outbox_relay.messages import Outgoing, event_reader
from outbox_relay.pgoutput import Decoder, Transaction, acknowledged_end, int_to_lsn, lsn_to_int
from outbox_relay.relay import STOP_GRACE_S, BatchResult
from outbox_relay.replication import ReplicationStream

# The longest one wait on the stream lasts before the relay looks at its stop flag again.
WAIT_SLICE_S = 0.2
# While a batch waits to learn that the walsender decoded past its head: how often it asks again.
ASK_EVERY_S = 1.0
_SLOT_ACTIVE = text("SELECT active FROM pg_replication_slots WHERE slot_name = :slot")
_SLOT_CONFIRMED = text("SELECT confirmed_flush_lsn >= CAST(:lsn AS pg_lsn) FROM pg_replication_slots "
                       "WHERE slot_name = :slot")


class StreamingWalRelay(WalRelay):
    """`WalRelay` reading its slot over one replication connection (see the top)."""

    wal_read = "stream"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._conninfo = libpq_url(self.engine.url.render_as_string(hide_password=False))
        self._stream: ReplicationStream | None = None
        self._decoder = Decoder()
        self._pending: bytes | None = None  # a message read while waiting between batches

    # -- the stream ----------------------------------------------------------------------------

    def _open_stream(self) -> ReplicationStream:
        if self._stream is None:
            self._stream = ReplicationStream(self._conninfo, self.slot, CAPTURE_PUBLICATION, self._confirmed)
            self._decoder = Decoder()  # a stream describes each relation once: a decoder per stream
            self._pending = None
        return self._stream

    def _close_stream(self) -> None:
        """End the stream, if one is open, confirming what was acknowledged, and wait until the walsender
        let the slot go (the next stream, or a peek, can then have it at once)."""
        stream, self._stream, self._pending = self._stream, None, None
        if stream is not None:
            stream.feedback.acknowledge(self._confirmed)
            stream.close()
            self._await_slot_released()

    def _drop_connection(self) -> None:
        self._close_stream()
        super()._drop_connection()

    def close(self) -> None:
        self._close_stream()
        super().close()

    def _await_slot_released(self) -> None:
        """Until the walsender let the slot go (it applied the last status update before it saw the
        connection end), STOP_GRACE_S at most; only while the relay's own connection is up."""
        if self._conn is None:
            return
        deadline = time.monotonic() + STOP_GRACE_S
        try:
            while time.monotonic() < deadline:
                active = self._conn.execute(_SLOT_ACTIVE, {"slot": self.slot}).scalar()
                self._conn.commit()
                if not active:
                    return
                time.sleep(0.02)
        except SQLAlchemyError:
            pass

    # -- one batch -----------------------------------------------------------------------------

    def relay_batch(self) -> BatchResult:
        """Read, produce and confirm one batch (see the top). Raises on PostgreSQL errors, the stream's
        included (nothing more is confirmed then)."""
        conn = self._connection()
        transactions: list[Transaction] = []
        acknowledged: Counter[int] = Counter()
        failed: list[str] = []
        passed = False
        try:
            if not self._slot_checked:
                self.ensure_slot(conn)
                if not self._slot_checked:
                    return BatchResult(0, 0, 0)
            stream = self._open_stream()
            head = conn.execute(HEAD).one()
            conn.commit()
            target = lsn_to_int(head.lsn)

            def events() -> Iterator[Outgoing]:
                """The events as they are read; the transactions they belong to are counted meanwhile."""
                nonlocal passed
                decoder = self._decoder
                event_of = event_reader(decoder, transactions)
                read, asked = 0, 0.0
                while True:
                    reached = transactions[-1].end_lsn if transactions else self._confirmed
                    message, self._pending = self._pending, None
                    if message is None and decoder.in_transaction:
                        message = self._read_on(stream)
                        if message is None:
                            return  # stopped halfway through a transaction: the stream ends below
                    elif message is None:
                        if max(reached, stream.server_position) >= target:
                            passed = True
                            return
                        if read >= self.batch_size or self.shutting_down:
                            return
                        message = stream.read(0.0 if not asked else WAIT_SLICE_S)
                        if message is None:
                            if (max(reached, stream.server_position) < target
                                    and time.monotonic() - asked >= ASK_EVERY_S):
                                stream.send_status(reply=True)  # how far has the walsender decoded?
                                asked = time.monotonic()
                            continue
                    read += 1
                    if (event := event_of(message)) is not None:
                        yield event

            delivered, failed = self._produce(events())
            acknowledged.update(delivered)
            position, whole = acknowledged_end(transactions, acknowledged)
            whole = whole and not self._decoder.in_transaction
            if whole:  # every message read was acknowledged: the last keepalive's position too
                position = max(position, stream.server_position)
            if position > self._confirmed:
                if delivered and self.before_mark is not None:
                    self.before_mark([position])
                self._confirmed = position
                stream.feedback.acknowledge(position)
                stream.send_status()
            self._captured_unrecorded |= bool(transactions)
            if passed and whole:
                self._caught_up(conn, head, captured=bool(transactions))
            if not whole:
                self._close_stream()  # the next stream starts at what was confirmed and sends the rest again
        except (DBAPIError, SQLAlchemyError, psycopg.Error):
            self._drop_connection()
            raise
        except BaseException:
            self._close_stream()  # e.g. a broken producer: what was read unconfirmed is read again
            raise
        return self._batch_result(transactions, acknowledged, failed, more=not passed)

    def _read_on(self, stream: ReplicationStream) -> bytes | None:
        """The next message of the transaction being read (the walsender sends a transaction whole, at its
        commit): a stopping relay finishes the transaction in hand, as a peek finishes its batch, unless
        the stream stays silent STOP_GRACE_S (then None)."""
        stop_deadline: float | None = None
        while True:
            message = stream.read(WAIT_SLICE_S)
            if message is not None:
                return message
            if self.shutting_down:
                stop_deadline = stop_deadline or time.monotonic() + STOP_GRACE_S
                if time.monotonic() >= stop_deadline:
                    return None

    # -- between batches -----------------------------------------------------------------------

    def _retire(self) -> None:
        """`WalRelay._retire`, once the server has applied the last status update: the retirement reads
        the slot's confirmed position, which the walsender moves when it reads the update."""
        deadline = time.monotonic() + STOP_GRACE_S
        with self.engine.connect() as conn:
            while self._stream is not None and time.monotonic() < deadline and not conn.execute(
                    _SLOT_CONFIRMED, {"slot": self.slot, "lsn": int_to_lsn(self._confirmed)}).scalar():
                conn.rollback()
                time.sleep(0.02)
        super()._retire()

    def _wait_for_events(self) -> None:
        """Wait on the stream itself, up to the poll interval: a committed transaction's first message ends
        the wait (and is the next batch's first)."""
        stream = self._stream
        if stream is None:
            super()._wait_for_events()
            return
        deadline = time.monotonic() + self.poll_interval_s
        while self._pending is None and not self.shutting_down:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._pending = stream.read(min(remaining, WAIT_SLICE_S))

    def _await_deliveries(self, pending: Callable[[], int]) -> None:
        """`Relay._await_deliveries`, with the stream's status updates going out meanwhile."""
        stream = self._stream
        if stream is None:
            super()._await_deliveries(pending)
            return

        def still_pending() -> int:
            if stream.feedback.due():
                stream.send_status()
            return pending()

        super()._await_deliveries(still_pending)
