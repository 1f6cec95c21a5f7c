"""The wal relay's replication stream without a server: the protocol's messages, the status updates'
timing, and a stream batch's reading and confirming against a scripted stream (the integration tests
read a real slot with RELAY_WAL_READ=stream)."""
from __future__ import annotations

import struct
from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError, KafkaException
from sqlalchemy import create_engine

from outbox_relay import slot_stream
from outbox_relay.capture import CAUGHT_UP, HEAD
from outbox_relay.pgoutput import POSTGRES_EPOCH_S, ProtocolError, Transaction, acknowledged_end, int_to_lsn
from outbox_relay.replication import STATUS_EVERY_S, Feedback, Keepalive, parse_copy_data, status_update
from outbox_relay.slot_stream import StreamingWalRelay
from tests.unit.test_pgoutput import ROW, begin, commit, insert, relation


def test_xlogdata_carries_one_pgoutput_message_and_a_keepalive_its_position():
    message = commit(0x200)
    assert parse_copy_data(b"w" + struct.pack("!qqq", 0x100, 0x200, 7) + message) == message
    assert parse_copy_data(memoryview(b"k" + struct.pack("!qqB", 0x1_0000_0300, 7, 1))) == Keepalive(
        0x1_0000_0300, True)
    assert parse_copy_data(b"k" + struct.pack("!qqB", 5, 7, 0)) == Keepalive(5, False)


@pytest.mark.parametrize("data", [b"w" + b"\0" * 20, b"k" + b"\0" * 16, b"x" + b"\0" * 40])
def test_a_short_or_unknown_replication_message_is_refused(data):
    with pytest.raises(ProtocolError):
        parse_copy_data(data)


def test_a_status_update_confirms_one_position_in_postgres_time():
    update = status_update(0x1_0000_0300, POSTGRES_EPOCH_S + 2.5, reply=True)
    assert len(update) == 34
    kind, written, flushed, applied, sent_us, reply = struct.unpack("!cqqqqB", update)
    assert (kind, written, flushed, applied, sent_us, reply) == (b"r", 0x1_0000_0300, 0x1_0000_0300,
                                                                 0x1_0000_0300, 2_500_000, 1)


def test_feedback_only_moves_forward_and_is_due_every_interval():
    now = [100.0]
    feedback = Feedback(0x200, clock=lambda: now[0])
    assert not feedback.acknowledge(0x100) and feedback.confirmed == 0x200
    assert feedback.acknowledge(0x300) and feedback.confirmed == 0x300
    now[0] += STATUS_EVERY_S - 0.1
    assert not feedback.due()
    now[0] += 0.2
    assert feedback.due()
    assert struct.unpack("!cqqqqB", feedback.status())[2] == 0x300 and feedback.sent == 0x300
    assert not feedback.due()


def test_the_slot_moves_past_the_transactions_acknowledged_whole_up_to_the_first_that_was_not():
    transactions = [Transaction(1, inserts=2, end_lsn=0x100), Transaction(2, inserts=1, end_lsn=0x200),
                    Transaction(3, inserts=3, end_lsn=0x300)]
    assert acknowledged_end(transactions, {0: 2, 1: 1, 2: 3}) == (0x300, True)
    assert acknowledged_end(transactions, {0: 2, 2: 3}) == (0x100, False)
    assert acknowledged_end([], {}) == (0, True)


class ScriptedStream:
    """A replication stream whose server sends `script` (pgoutput messages, and Keepalives); `answers` are
    sent in turn each time the relay asks for a keepalive."""

    def __init__(self, script: list, answers: list[list] | None = None):
        self.script, self.answers = list(script), list(answers or [])
        self.feedback = Feedback(0)
        self.server_position = 0
        self.statuses: list[tuple[int, bool]] = []
        self.closed = False
        self._idle_reads = 0

    def read(self, timeout_s: float) -> bytes | None:
        if not self.script:
            self._idle_reads += 1
            assert self._idle_reads < 10_000, "the batch waits for a message the server will never send"
            return None
        item = self.script.pop(0)
        if isinstance(item, Keepalive):
            self.server_position = max(self.server_position, item.position)
            return None
        return item

    def send_status(self, *, reply: bool = False) -> None:
        self.statuses.append((self.feedback.confirmed, reply))
        if reply and self.answers:
            self.script.extend(self.answers.pop(0))

    def close(self) -> None:
        self.closed = True


class ScriptedConnection:
    """The relay's SQL connection: HEAD answers `head`, the rest is recorded."""

    def __init__(self, head_lsn: int):
        self.head = SimpleNamespace(lsn=int_to_lsn(head_lsn), at="2026-12-07 17:00:00+00", xmin="900")
        self.executed: list = []

    def execute(self, statement, parameters=None):
        self.executed.append(statement)
        return SimpleNamespace(one=lambda: self.head)

    def commit(self) -> None:
        pass

    def begin(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class AcknowledgingProducer:
    """Acknowledges every message at once but the `fail`-th ones (counted from 1)."""

    def __init__(self, fail: tuple[int, ...] = ()):
        self.fail, self.count = fail, 0

    def produce(self, topic, value, key, headers, on_delivery):
        self.count += 1
        on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT) if self.count in self.fail else None, None)

    def poll(self, timeout):
        return 0

    def flush(self, timeout):
        return 0


def streaming_relay(stream: ScriptedStream, head_lsn: int, producer=None, batch_size: int = 1000):
    relay = StreamingWalRelay(create_engine("postgresql+psycopg://quiz:quiz@127.0.0.1:1/quiz"),
                              producer or AcknowledgingProducer(), "t", slot="s", leader_lock=False,
                              batch_size=batch_size)
    conn = ScriptedConnection(head_lsn)
    relay._connection = lambda: conn
    relay._slot_checked = True
    relay._stream = stream
    marks: list = []
    relay.before_mark = marks.append
    return relay, conn, marks


def transaction(end_lsn: int, inserts: int, *, described: bool = True) -> list[bytes]:
    return ([begin(end_lsn)] + ([relation(16400)] if described else []) + [insert(16400, ROW)] * inserts
            + [commit(end_lsn)])


def test_a_batch_reads_what_committed_before_its_head_and_confirms_it_at_once():
    stream = ScriptedStream(transaction(0x100, 2) + transaction(0x200, 1, described=False)
                            + transaction(0x300, 1, described=False))
    relay, conn, marks = streaming_relay(stream, head_lsn=0x200)
    result = relay.relay_batch()
    assert (result.claimed, result.published, result.failed, result.more) == (3, 3, 0, False)
    assert relay._confirmed == 0x200 and stream.statuses == [(0x200, False)] and marks == [[0x200]]
    assert conn.executed == [HEAD, CAUGHT_UP]  # caught up: recorded (the first record of this relay)
    assert stream.script == transaction(0x300, 1, described=False)  # committed after the head: next batch


def test_with_nothing_left_to_read_before_its_head_a_batch_asks_how_far_the_walsender_decoded(monkeypatch):
    monkeypatch.setattr(slot_stream, "ASK_EVERY_S", 0.0)  # asks again at once when an answer falls short
    stream = ScriptedStream(transaction(0x100, 1), answers=[[Keepalive(0x180, False)],
                                                            [Keepalive(0x400, False)]])
    relay, conn, _marks = streaming_relay(stream, head_lsn=0x380)
    result = relay.relay_batch()
    assert (result.claimed, result.more) == (1, False)
    # Asked twice (the first answer was short of the head), then confirmed the keepalive's position: the
    # walsender had decoded that far and everything it sent before was acknowledged.
    assert [reply for _position, reply in stream.statuses] == [True, True, False]
    assert relay._confirmed == 0x400 and stream.statuses[-1] == (0x400, False)
    assert conn.executed[-1] is CAUGHT_UP


def test_a_failed_delivery_confirms_only_the_transactions_before_it_and_ends_the_stream():
    stream = ScriptedStream(transaction(0x100, 2) + transaction(0x200, 2, described=False))
    relay, conn, marks = streaming_relay(stream, head_lsn=0x200, producer=AcknowledgingProducer(fail=(3,)))
    result = relay.relay_batch()
    assert (result.claimed, result.published, result.failed) == (4, 3, 1)
    assert relay._confirmed == 0x100 and stream.statuses == [(0x100, False)] and marks == [[0x100]]
    assert stream.closed and relay._stream is None  # the next batch opens it again from 0x100
    assert CAUGHT_UP not in conn.executed


def test_a_batch_ends_at_the_batch_size_at_a_transactions_end_and_the_stream_goes_on():
    stream = ScriptedStream(transaction(0x100, 2) + transaction(0x200, 1, described=False))
    relay, _conn, _marks = streaming_relay(stream, head_lsn=0x200, batch_size=3)
    first = relay.relay_batch()
    assert (first.claimed, first.more, relay._confirmed) == (2, True, 0x100)
    second = relay.relay_batch()  # the relation was described once, earlier in the stream
    assert (second.claimed, second.more, relay._confirmed) == (1, False, 0x200)


def test_an_idle_batch_already_past_its_head_reads_nothing():
    stream = ScriptedStream([])
    relay, conn, _marks = streaming_relay(stream, head_lsn=0x100)
    relay._confirmed = 0x100
    result = relay.relay_batch()
    assert (result.claimed, result.more) == (0, False) and stream.statuses == []
    assert conn.executed == [HEAD, CAUGHT_UP]  # a new relay records once


class BrokenProducer(AcknowledgingProducer):
    """Acknowledges the first message, then raises as a producer in a fatal state does."""

    def produce(self, topic, value, key, headers, on_delivery):
        if self.count:
            raise KafkaException(KafkaError(KafkaError._FATAL))
        super().produce(topic, value, key, headers, on_delivery)


def test_an_error_halfway_through_a_batch_ends_the_stream_so_nothing_read_is_skipped():
    stream = ScriptedStream(transaction(0x100, 2) + transaction(0x200, 1, described=False))
    relay, _conn, marks = streaming_relay(stream, head_lsn=0x200, producer=BrokenProducer())
    with pytest.raises(KafkaException):
        relay.relay_batch()
    assert stream.closed and relay._stream is None and relay._confirmed == 0 and marks == []
