"""A reader of PostgreSQL's `pgoutput` logical decoding messages (protocol version 1), as far as the
relay needs: Begin, Relation, Insert and Commit; every other message is skipped.

The relay reads its slot through `pg_logical_slot_peek_binary_changes(..., 'proto_version', '1',
'publication_names', ...)`, each row's `data` one message, or over the replication protocol
(outbox_relay/replication.py), each XLogData one message. A Relation message precedes the first change
of every relation within a call's output, or a stream's (once per stream, and again after the relation
changed), and the column names it carries are how an Insert's values are named: one `Decoder` reads one
call, or one stream. Values come in their text form
(`t`), or as SQL NULL (`n`); `u` (an unchanged TOASTed value) only occurs in updates. An Insert hands
its values on as that text's UTF-8 bytes, in the Relation's column order, undecoded: the relay splices
them into its messages as they are (one event is one call of `_insert`, the relay's hot path).

Layouts (https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html):
  B  Int64 final LSN, Int64 commit time, Int32 xid
  C  Int8 flags, Int64 commit LSN, Int64 end LSN, Int64 commit time
  R  Int32 oid, String namespace, String name, Int8 replica identity, Int16 ncols,
     ncols x (Int8 flags, String name, Int32 type oid, Int32 type modifier)
  I  Int32 oid, Byte1 'N', TupleData = Int16 ncols, ncols x (Byte1 kind [, Int32 len, bytes])
"""
from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

_INT64 = struct.Struct("!q")
_INT32 = struct.Struct("!i")
_INT16 = struct.Struct("!h")
POSTGRES_EPOCH_S = 946684800.0  # 2000-01-01 UTC, PostgreSQL's epoch, in Unix seconds


@dataclass(frozen=True)
class Relation:
    oid: int
    namespace: str
    name: str
    columns: tuple[str, ...]


class Insert(NamedTuple):
    relation: Relation
    values: tuple[bytes | None, ...]  # each column's text (UTF-8), None for NULL, in relation.columns' order

    @property
    def table(self) -> str:
        return self.relation.name

    def text(self) -> dict[str, str | None]:
        """Column -> text form, decoded (for readers off the hot path)."""
        return {column: None if value is None else value.decode()
                for column, value in zip(self.relation.columns, self.values)}


@dataclass
class Transaction:
    """One committed transaction: `end_lsn` is where a slot may advance to once every insert of it was
    delivered; `inserts` counts them (they are handed out one by one, as they are read)."""

    xid: int
    inserts: int = 0
    end_lsn: int = 0
    commit_s: float = 0.0  # its commit time (seconds since the Unix epoch), from its Begin message


def acknowledged_end(transactions: list[Transaction], acknowledged: Mapping[int, int]) -> tuple[int, bool]:
    """Where the slot may move after a batch: the end of the last of `transactions` (in commit order) that
    Kafka acknowledged whole (`acknowledged[i]` events of the i-th) with none before it missing, or 0; and
    whether every one was."""
    target = 0
    for index, transaction in enumerate(transactions):
        if acknowledged.get(index, 0) != transaction.inserts:
            return target, False
        target = transaction.end_lsn
    return target, True


class ProtocolError(ValueError):
    """A message this reader cannot parse (a protocol it does not speak)."""


class _Cursor:
    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def take(self, n: int) -> bytes:
        chunk = self.data[self.at:self.at + n]
        if len(chunk) != n:
            raise ProtocolError("message ends early")
        self.at += n
        return chunk

    def int64(self) -> int:
        return _INT64.unpack(self.take(8))[0]

    def int32(self) -> int:
        return _INT32.unpack(self.take(4))[0]

    def int16(self) -> int:
        return _INT16.unpack(self.take(2))[0]

    def byte(self) -> int:
        return self.take(1)[0]

    def string(self) -> str:
        end = self.data.index(b"\0", self.at)
        text = self.data[self.at:end].decode()
        self.at = end + 1
        return text


class Decoder:
    """Reads the rows of one peek call in order: each insert as it comes, then its transaction's commit.
    A transaction is only known whole at its Commit; the inserts stream, so a huge transaction never has
    to be held in memory."""

    def __init__(self) -> None:
        self.relations: dict[int, Relation] = {}
        self._open: Transaction | None = None

    @property
    def in_transaction(self) -> bool:
        """A Begin was read and its Commit not yet."""
        return self._open is not None

    @property
    def commit_s(self) -> float:
        """The commit time of the transaction being read (0.0 outside one)."""
        return self._open.commit_s if self._open is not None else 0.0

    def feed(self, data: bytes) -> Insert | Transaction | None:
        """Read one message: an Insert, the Transaction its Commit ends, or None (anything else)."""
        if data[0] == 0x49:  # I: one per event, the hot path
            return self._insert(data)
        kind, cursor = data[:1], _Cursor(data)
        cursor.at = 1
        if kind == b"B":
            cursor.int64()  # final LSN
            committed_us = cursor.int64()  # microseconds since 2000-01-01 UTC
            self._open = Transaction(xid=cursor.int32(), commit_s=committed_us / 1e6 + POSTGRES_EPOCH_S)
        elif kind == b"R":
            oid, namespace, name = cursor.int32(), cursor.string(), cursor.string()
            cursor.byte()  # replica identity
            columns = []
            for _ in range(cursor.int16()):
                cursor.byte()
                columns.append(cursor.string())
                cursor.int32()
                cursor.int32()
            self.relations[oid] = Relation(oid, namespace, name, tuple(columns))
        elif kind == b"C":
            cursor.byte()  # flags
            cursor.int64()  # commit LSN
            end_lsn = cursor.int64()
            done, self._open = self._open, None
            if done is None:
                raise ProtocolError("a commit without its begin")
            done.end_lsn = end_lsn
            return done
        # Anything else (Type, Origin, Update, Delete, Truncate, Message) is not the relay's.
        return None


    def _insert(self, data: bytes) -> Insert:
        """The hot path (one call per event), read with offsets rather than a cursor object."""
        relation = self.relations.get(_INT32.unpack_from(data, 1)[0])
        if relation is None:
            raise ProtocolError("an insert into a relation not described first")
        if data[5:6] != b"N":
            raise ProtocolError("an insert without a new tuple")
        if self._open is None:
            raise ProtocolError("an insert outside a transaction")
        count = _INT16.unpack_from(data, 6)[0]
        if count != len(relation.columns):
            raise ProtocolError("an insert's columns differ from its relation's")
        at = 8
        values: list[bytes | None] = []
        append = values.append
        unpack_len = _INT32.unpack_from
        for _ in range(count):
            tag = data[at]
            if tag == 0x74:  # t: text
                length = unpack_len(data, at + 1)[0]
                at += 5 + length
                append(data[at - length:at])
            elif tag == 0x6E:  # n: null
                at += 1
                append(None)
            else:
                raise ProtocolError(f"an insert's value of kind {chr(tag)!r}")
        if at > len(data):
            raise ProtocolError("message ends early")
        self._open.inserts += 1
        return Insert(relation, tuple(values))


def lsn_to_int(lsn: str) -> int:
    """`16/B374D848` -> its 64-bit position."""
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def int_to_lsn(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"
