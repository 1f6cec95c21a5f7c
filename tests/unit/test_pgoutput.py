"""The pgoutput decoder and the slot's name, on hand-made messages (the integration tests read a real slot)."""
from __future__ import annotations

import struct

import pytest

from app.services.outbox import capture_slot_name
from outbox_relay.capture import captured_row
from outbox_relay.pgoutput import Decoder, Insert, ProtocolError, Transaction, int_to_lsn, lsn_to_int

COLUMNS = ["id", "seq", "aggregate_type", "aggregate_id", "event_type", "version", "payload", "created_at",
           "published_at"]


def begin(xid: int) -> bytes:
    return b"B" + struct.pack("!qqi", 0x10, 0, xid)


def relation(oid: int, name: str = "events") -> bytes:
    body = b"R" + struct.pack("!i", oid) + b"public\0" + name.encode() + b"\0" + b"d" + struct.pack("!h", len(COLUMNS))
    for column in COLUMNS:
        body += b"\0" + column.encode() + b"\0" + struct.pack("!ii", 25, -1)
    return body


def insert(oid: int, values: list[str | None]) -> bytes:
    body = b"I" + struct.pack("!i", oid) + b"N" + struct.pack("!h", len(values))
    for value in values:
        if value is None:
            body += b"n"
        else:
            raw = value.encode()
            body += b"t" + struct.pack("!i", len(raw)) + raw
    return body


def commit(end_lsn: int) -> bytes:
    return b"C" + b"\0" + struct.pack("!qqq", end_lsn - 8, end_lsn, 0)


ROW = ["6f1c1d0e-3a52-4c8e-9d5e-0b7c1f2a3b4c", "7", "quiz_session", "s-1", "session_ended", "1",
       '{"ended_at": "it\'s \\"now\\""}', "2026-12-01 03:20:00.123456+00", None]


def test_inserts_stream_and_the_commit_ends_the_transaction():
    decoder = Decoder()
    items = [decoder.feed(m) for m in (begin(42), relation(16400), insert(16400, ROW), insert(16400, ROW),
                                       b"Y" + b"ignored", commit(0x1_0000_0010))]
    inserts = [i for i in items if isinstance(i, Insert)]
    assert len(inserts) == 2 and inserts[0].table == "events" and inserts[0].values["published_at"] is None
    done = items[-1]
    assert isinstance(done, Transaction) and done.xid == 42 and done.inserts == 2 and done.end_lsn == 0x1_0000_0010
    row = captured_row(inserts[0].values, 0)
    assert row.payload == {"ended_at": 'it\'s "now"'} and row.version == 1
    assert row.created_at.isoformat() == "2026-12-01T03:20:00.123456+00:00"


def test_an_insert_into_an_undescribed_relation_is_refused():
    decoder = Decoder()
    decoder.feed(begin(1))
    with pytest.raises(ProtocolError):
        decoder.feed(insert(99, ROW))


def test_lsns_round_trip():
    assert lsn_to_int("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert int_to_lsn(lsn_to_int("16/B374D848")) == "16/B374D848"


def test_slot_names_hold_the_database_and_stay_valid():
    assert capture_slot_name("quiz_wal") == "outbox_relay_quiz_wal"
    odd = capture_slot_name("Quiz-Test.2")
    assert odd.startswith("outbox_relay_quiz_test_2_") and odd != capture_slot_name("quiz_test_2")
    long = capture_slot_name("x" * 80)
    assert len(long) <= 63 and all(c.isalnum() or c == "_" for c in long)
