"""Ids of new rows: UUID version 7 (RFC 9562), whose first 48 bits are the creation time in
milliseconds and whose other 74 free bits are random.

Time-ordered keys land at the right-hand edge of their B-tree indexes: a busy day's answers,
participants, sessions and events touch a few hot index pages instead of one random page per
insert among millions (with random version 4 ids, at 10,000,000 answers every insert read a cold
leaf and wrote it in full to the WAL after each checkpoint). Ids stay unguessable enough for what
they are, identifiers, never credentials; they reveal when a row was made, which every such row
also stores in the open.
"""
from __future__ import annotations

import os
import re
import time
import uuid

_RAND_B_BITS = 62
_RAND_A_BITS = 12


def new_id() -> uuid.UUID:
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    rand_a = (rand >> _RAND_B_BITS) & ((1 << _RAND_A_BITS) - 1)
    rand_b = rand & ((1 << _RAND_B_BITS) - 1)
    return uuid.UUID(int=(millis & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b)


# The same kind of id made by PostgreSQL, for statements that insert many rows at once (one per row:
# the expression is volatile). A version 4 id whose first 48 bits become the millisecond of
# clock_timestamp() and whose version nibble becomes 7 (bits 52 and 53 set; 4 is 0100, 7 is 0111).
NEW_ID_SQL = ("encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) placing "
              "substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3) "
              "FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid")


# How the API writes an id, and the only spelling it reads (OpenAPI's `uuid` format): uuid.UUID would
# also take braces, a urn:uuid: prefix or no dashes.
_ID_TEXT = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def parse_id(text: str) -> uuid.UUID:
    """The id `text` spells (8-4-4-4-12 hexadecimal digits); ValueError for anything else."""
    if not isinstance(text, str) or not _ID_TEXT.fullmatch(text):
        raise ValueError("an id is 36 characters: 8-4-4-4-12 hexadecimal digits")
    return uuid.UUID(text)
