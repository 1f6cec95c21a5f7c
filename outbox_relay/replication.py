"""PostgreSQL's streaming replication protocol, as far as the wal relay reads its logical slot with it
(RELAY_WAL_READ=stream, outbox_relay/slot_stream.py). psycopg 3 has no replication API, but its libpq
layer (`psycopg.pq.PGconn`) has every call the protocol needs: a `replication=database` connection, a
query, COPY BOTH's `get_copy_data` and `put_copy_data`, and the socket to wait on.

`START_REPLICATION SLOT s LOGICAL <position> (proto_version '1', publication_names 'p')` makes the
server's walsender decode the slot's WAL once, from where the slot is (or from `position`, when that is
later), and send each transaction as it commits, in commit order. In the COPY that follows, the server
sends CopyData messages of two kinds (https://www.postgresql.org/docs/15/protocol-replication.html):
  w  XLogData: Int64 start, Int64 end, Int64 send time, then one pgoutput message (outbox_relay/pgoutput.py)
  k  primary keepalive: Int64 the server's position, Int64 send time, Byte1 1 when a reply is wanted now
and the client sends
  r  standby status update: Int64 written, Int64 flushed, Int64 applied, Int64 send time, Byte1 1 to ask
     the server for a keepalive at once
The flushed position is what the slot confirms (its `confirmed_flush_lsn`, where a new stream starts):
the relay gives only what Kafka acknowledged. A keepalive's position is where the walsender has decoded
to: every transaction that committed before it was sent before the keepalive.

Status updates go out when a keepalive asks for one, every STATUS_EVERY_S (the server ends a stream it
has not heard from for `wal_sender_timeout`, 60 s by default), and when the relay confirms new
transactions (`ReplicationStream.send_status`). Times are PostgreSQL's: microseconds since 2000-01-01.
"""
from __future__ import annotations

import select
import struct
import time
from collections.abc import Callable
from typing import NamedTuple

import psycopg
from psycopg import pq
from psycopg.conninfo import make_conninfo

from outbox_relay.pgoutput import POSTGRES_EPOCH_S, ProtocolError, int_to_lsn

# pg_recvlogical's default: well inside wal_sender_timeout.
STATUS_EVERY_S = 10.0
_XLOG_DATA = struct.Struct("!cqqq")
_KEEPALIVE = struct.Struct("!cqqB")
_STATUS = struct.Struct("!cqqqqB")
# A server gone without closing the connection (a cut network) is an error within about half a minute,
# which the relay retries like any lost connection.
_TCP = {"keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "5", "keepalives_count": "3",
        "tcp_user_timeout": "30000"}


class Keepalive(NamedTuple):
    position: int  # the server has decoded and sent everything before it
    reply: bool  # the server asks for a status update now


def parse_copy_data(data: bytes | memoryview) -> bytes | Keepalive:
    """One CopyData of the server: an XLogData's pgoutput message, or a Keepalive."""
    kind = data[0]
    if kind == 0x77:  # w
        if len(data) < _XLOG_DATA.size:
            raise ProtocolError("an XLogData message ends early")
        return bytes(data[_XLOG_DATA.size:])
    if kind == 0x6B:  # k
        if len(data) < _KEEPALIVE.size:
            raise ProtocolError("a keepalive message ends early")
        _kind, position, _sent, reply = _KEEPALIVE.unpack_from(data)
        return Keepalive(position, bool(reply))
    raise ProtocolError(f"a replication message of kind {chr(kind)!r}")


def status_update(flushed: int, now_s: float, *, reply: bool = False) -> bytes:
    """A standby status update confirming `flushed` (as written and applied too) at Unix time `now_s`."""
    sent_us = int((now_s - POSTGRES_EPOCH_S) * 1_000_000)
    return _STATUS.pack(b"r", flushed, flushed, flushed, sent_us, 1 if reply else 0)


class Feedback:
    """What a stream may confirm, what it last told the server, and when it must say so again."""

    def __init__(self, confirmed: int, clock: Callable[[], float] = time.monotonic):
        self.confirmed = confirmed  # every transaction that committed before it is on Kafka
        self.sent = 0  # the flushed position of the last status update
        self._clock = clock
        self._last = clock()

    def acknowledge(self, position: int) -> bool:
        """Every transaction that committed before `position` is on Kafka; True when that is news."""
        if position <= self.confirmed:
            return False
        self.confirmed = position
        return True

    def due(self) -> bool:
        """STATUS_EVERY_S passed since the last status update."""
        return self._clock() - self._last >= STATUS_EVERY_S

    def status(self, *, reply: bool = False) -> bytes:
        """The status update to send now (confirming `confirmed`)."""
        self._last = self._clock()
        self.sent = self.confirmed
        return status_update(self.confirmed, time.time(), reply=reply)


class ReplicationStream:
    """One walsender connection streaming the slot (see the top). Every error is a `psycopg.Error`:
    the connection is lost, or the server refused or ended the stream."""

    def __init__(self, conninfo: str, slot: str, publication: str, start: int, *,
                 application_name: str = "outbox_relay.stream"):
        self.feedback = Feedback(start)
        self.server_position = 0  # the position of the last keepalive
        info = make_conninfo(conninfo, replication="database", application_name=application_name,
                             connect_timeout=5, **_TCP)
        self._conn = pq.PGconn.connect(info.encode())
        if self._conn.status != pq.ConnStatus.OK:
            message = self._conn.get_error_message()
            self._conn.finish()
            raise psycopg.OperationalError(f"replication connection failed: {message}")
        self._conn.send_query(f'START_REPLICATION SLOT "{slot}" LOGICAL {int_to_lsn(start)} '
                              f"(proto_version '1', publication_names '{publication}')".encode())
        result = self._conn.get_result()
        if result is None or result.status != pq.ExecStatus.COPY_BOTH:
            message = result.get_error_message() if result is not None else self._conn.get_error_message()
            self._conn.finish()
            raise psycopg.OperationalError(f"START_REPLICATION of slot {slot} failed: {message}")

    def read(self, timeout_s: float) -> bytes | None:
        """The next pgoutput message; None after `timeout_s` without one, or at a keepalive (its position is
        then `server_position`: a caller that has handled every message before it knows how far the server
        decoded). Sends the status updates that are due meanwhile."""
        conn = self._conn
        deadline = time.monotonic() + timeout_s
        consumed = False
        while True:
            if self.feedback.due():
                self.send_status()
            size, data = conn.get_copy_data(1)
            if size > 0:
                message = parse_copy_data(data)
                if type(message) is bytes:
                    return message
                self.server_position = max(self.server_position, message.position)
                if message.reply:
                    self.send_status()
                return None
            if size == -1:
                raise self._ended()
            if not consumed:  # what the socket already holds, without waiting
                conn.consume_input()
                consumed = True
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([conn.socket], [], [], remaining)[0]:
                return None
            conn.consume_input()

    def send_status(self, *, reply: bool = False) -> None:
        """A status update now, confirming `feedback.confirmed`; `reply` asks for a keepalive at once."""
        self._conn.put_copy_data(self.feedback.status(reply=reply))
        self._conn.flush()

    def _ended(self) -> psycopg.OperationalError:
        result = self._conn.get_result()
        message = result.get_error_message() if result is not None else self._conn.get_error_message()
        return psycopg.OperationalError(f"the server ended the replication stream: {message or 'no reason'}")

    def close(self) -> None:
        """Confirm what was acknowledged one last time and end the connection (the walsender applies the
        status update before it sees the end)."""
        try:
            if self._conn.status == pq.ConnStatus.OK:
                self.send_status()
        except (psycopg.Error, OSError):
            pass
        self._conn.finish()
