"""What the relay produces for one event (`Outgoing`), made from a claimed row (poll mode, `outgoing_of_row`)
or from an insert's columns read from the WAL (wal mode, `captured_event`): the same key, envelope and
headers either way, spliced from PostgreSQL's text of the columns (`envelope_json_of_text`)."""
from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from operator import itemgetter
from typing import Any, NamedTuple

from app.core.events import envelope_json_of_text
from app.core.tracing import normal_traceparent
from outbox_relay.pgoutput import Decoder, Insert, Relation, Transaction


class Outgoing(NamedTuple):
    """One event as the relay produces it, and what its delivery report acknowledges (`ack`); its
    aggregate type, commit time (seconds since the epoch: see the mode) and `traceparent` (or None) are
    for the commit → produced histogram and the trace."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    ack: Any
    event_id: Any
    aggregate_type: str = ""
    committed_s: float = 0.0
    traceparent: str | None = None


def outgoing_of_row(row: Any) -> Outgoing:
    """A claimed `events` row (poll mode), acknowledged by its primary key for the mark. Its commit is its
    commit time with track_commit_timestamp on, else its `created_at` (the insert, a moment before)."""
    committed = getattr(row, "committed_at", None) or row.created_at
    event_id, event_type, key = row.id_text.encode(), row.event_type.encode(), row.aggregate_id.encode()
    value = envelope_json_of_text(event_id, event_type, b"%d" % row.version, row.aggregate_type.encode(), key,
                                  row.created_text.encode(), row.payload_text.encode())
    return Outgoing(key, value, [("event_id", event_id), ("event_type", event_type)],
                    (row.id, row.created_at), row.id, row.aggregate_type, committed.timestamp(),
                    normal_traceparent(getattr(row, "traceparent", None)))


# The columns an event's message is made of, in the order `captured_event` takes them.
EVENT_COLUMNS = ("id", "event_type", "version", "aggregate_type", "aggregate_id", "created_at", "payload",
                 "traceparent")


def event_columns(relation: Relation) -> Callable[[tuple], tuple]:
    """Picks EVENT_COLUMNS out of an insert's values into `relation` (a relation without `traceparent`,
    from before migration 0031, gives None for it)."""
    index = {column: at for at, column in enumerate(relation.columns)}
    if "traceparent" in index:
        return itemgetter(*(index[column] for column in EVENT_COLUMNS))
    pick = itemgetter(*(index[column] for column in EVENT_COLUMNS[:-1]))
    return lambda values: (*pick(values), None)


def captured_event(columns: tuple, transaction: int, commit_s: float = 0.0) -> Outgoing:
    """The message of an insert's EVENT_COLUMNS (PostgreSQL's text, UTF-8), acknowledged by the index of its
    transaction in the batch; `commit_s` is the transaction's commit time (pgoutput's). Its envelope is
    spliced from the text as it is (`envelope_json_of_text`): the payload is not parsed."""
    event_id, event_type, version, aggregate_type, aggregate_id, created_at, payload, traceparent = columns
    return Outgoing(aggregate_id,
                    envelope_json_of_text(event_id, event_type, version, aggregate_type, aggregate_id,
                                          created_at, payload),
                    [("event_id", event_id), ("event_type", event_type)], transaction,
                    event_id, _aggregate_type(aggregate_type), commit_s,
                    None if traceparent is None else normal_traceparent(traceparent))


@lru_cache(maxsize=64)
def _aggregate_type(raw: bytes) -> str:
    return raw.decode()


def event_reader(decoder: Decoder, transactions: list[Transaction]) -> Callable[[bytes], Outgoing | None]:
    """Reads one pgoutput message of a wal-mode batch with `decoder`: the message of an insert into
    `events`, else None; a commit appends its transaction to `transactions`, whose length is the ack of
    the events read meanwhile (the relay's hot path: one call per message)."""
    feed = decoder.feed
    relation, pick = None, None

    def read(message: bytes) -> Outgoing | None:
        nonlocal relation, pick
        item = feed(message)
        if type(item) is Insert:
            if item.relation is not relation:
                relation = item.relation
                pick = event_columns(relation) if relation.name == "events" else None
            if pick is not None:
                return captured_event(pick(item.values), len(transactions), decoder.commit_s)
        elif item is not None:
            transactions.append(item)
        return None

    return read
