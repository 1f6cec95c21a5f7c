"""The pgoutput decoder and the slot's name, on hand-made messages (the integration tests read a real
slot)."""
from __future__ import annotations

import json
import struct
import uuid

import pytest

from app.core.outbox import capture_slot_name
from outbox_relay.messages import captured_event, event_columns
from outbox_relay.pgoutput import Decoder, Insert, ProtocolError, Transaction, int_to_lsn, lsn_to_int

COLUMNS = ["id", "seq", "aggregate_type", "aggregate_id", "event_type", "version", "payload", "created_at",
           "published_at"]


def begin(xid: int) -> bytes:
    return b"B" + struct.pack("!qqi", 0x10, 0, xid)


def relation(oid: int, name: str = "events") -> bytes:
    body = (b"R" + struct.pack("!i", oid) + b"public\0" + name.encode() + b"\0" + b"d"
            + struct.pack("!h", len(COLUMNS)))
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
    assert len(inserts) == 2 and inserts[0].table == "events" and inserts[0].text()["published_at"] is None
    done = items[-1]
    assert (isinstance(done, Transaction) and done.xid == 42 and done.inserts == 2
            and done.end_lsn == 0x1_0000_0010)
    message = captured_event(event_columns(inserts[0].relation)(inserts[0].values), 0)
    envelope = json.loads(message.value)
    assert envelope["payload"] == {"ended_at": 'it\'s "now"'} and envelope["version"] == 1
    assert envelope["occurred_at"] == "2026-12-01T03:20:00.123456+00:00"
    assert (message.key, message.ack, message.event_id) == (b"s-1", 0, ROW[0].encode())
    assert message.headers == [("event_id", ROW[0].encode()), ("event_type", b"session_ended")]


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


def test_an_envelope_built_from_the_columns_text_is_the_envelope_of_the_row():
    """The wal mode's envelope (payload spliced in as PostgreSQL's jsonb text) and the poll mode's
    (`Envelope.to_json`) carry the same JSON, including text that needs escaping."""
    from datetime import datetime

    from app.core.events import Envelope, envelope_json_of_text

    event_id = "6f1c1d0e-3a52-4c8e-9d5e-0b7c1f2a3b4c"
    payload = {"player_id": "ü\"q\\", "score": 12, "nested": {"a": [1, None, True]}}
    row = Envelope(event_id=uuid.UUID(event_id), event_type="entry_changed", version=1,
                   aggregate_type="leaderboard", aggregate_id='b"é',
                   occurred_at=datetime.fromisoformat("2026-12-01 03:20:00.5+05:30"), payload=payload)
    jsonb_text = json.dumps(payload, ensure_ascii=False)  # PostgreSQL's jsonb output: spaces, raw UTF-8
    spliced = envelope_json_of_text(event_id.encode(), b"entry_changed", b"1", b"leaderboard", 'b"é'.encode(),
                                    b"2026-12-01 03:20:00.5+05:30", jsonb_text.encode())
    assert json.loads(spliced) == json.loads(row.to_json())


@pytest.mark.parametrize("pg_text", ["2026-12-01 03:20:00+00", "2026-12-01 03:20:00.1+00",
                                     "2026-12-01 03:20:00.123456+00", "2026-12-01 03:20:00.05+05:30",
                                     "1999-01-31 23:59:59.999-03",
                                     "2026-12-01 03:20:00+05:30:15"])
def test_a_timestamps_text_is_rewritten_as_pythons_isoformat(pg_text):
    from datetime import datetime

    from app.core.events import iso_timestamp

    assert iso_timestamp(pg_text.encode()) == datetime.fromisoformat(pg_text).isoformat().encode()


@pytest.mark.parametrize("value", ["quiz_session", "b\"é", "tab\there", "back\\slash", "日本", "", "\x7f"])
def test_strings_are_spliced_as_json_dumps_writes_them(value):
    from app.core.events import envelope_json_of_text

    spliced = envelope_json_of_text(b"e", value.encode(), b"1", value.encode(), value.encode(),
                                    b"2026-12-01 03:20:00+00", b"{}")
    dumped = json.dumps(value)
    assert spliced == (f'{{"event_id":"e","event_type":{dumped},"version":1,"aggregate_type":{dumped},'
                       f'"aggregate_id":{dumped},"occurred_at":"2026-12-01T03:20:00+00:00","payload":{{}}}}'
                       ).encode()
