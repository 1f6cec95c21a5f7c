"""The event envelope, and the catalogue of the event types a process reads; shared by the web app, relay
and worker.

An event is written once to the `events` outbox (app/core/outbox.py), published by the relay with its
aggregate's id (a quiz session's, or a board's) as its Kafka key, and applied by the cache worker.
Consumers must be able to act on a payload alone, without reading PostgreSQL. Each aggregate names
its events and their versioned payloads (`EventTypes`: app/quiz/events.py, app/leaderboards/events.py);
a process that reads events decodes them with the catalogue of the aggregates it knows (`EventCatalog`).
"""
from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cached_property, lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from app.core.ids import new_id
from app.core.json_input import JsonInputError, decode_json
from app.core.poison import PoisonMessage


class Payload(BaseModel):
    """An event's payload, as its schema reads it; fields it does not know are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class PoisonEvent(PoisonMessage):
    """A message that can never be applied: undecodable, of an unknown type or version, of the wrong shape."""


@dataclass(frozen=True)
class EventTypes:
    """The events of one aggregate: `schemas` maps (event type, version) to its payload schema; a new
    version is a new entry, old ones stay readable. `normal_id` writes an aggregate id as its events
    carry it (and refuses one that is none); an envelope carrying `legacy_id_field` instead of
    `aggregate_type` and `aggregate_id` is one of this aggregate's, written before there were others."""

    aggregate_type: str
    schemas: Mapping[tuple[str, int], type[Payload]]
    normal_id: Callable[[str], str] = str
    legacy_id_field: str | None = None

    @cached_property
    def current_version(self) -> dict[str, int]:
        """The version each event type is written in: its newest."""
        versions: dict[str, int] = {}
        for event_type, version in self.schemas:
            versions[event_type] = max(version, versions.get(event_type, version))
        return versions

    def payload_for(self, event_type: str, payload: Payload) -> dict[str, Any]:
        """The JSON-ready payload of `payload`, checked against the current schema of `event_type`."""
        expected = self.schemas[(event_type, self.current_version[event_type])]
        if not isinstance(payload, expected):
            raise TypeError(f"{event_type} needs a {expected.__name__} payload")
        return payload.model_dump(mode="json")

    def payload_of(self, envelope: Envelope) -> Payload:
        """The envelope's payload as its schema reads it (once: a decoded envelope carries it)."""
        if envelope.parsed is not None:
            return envelope.parsed
        return self.parse(envelope.event_type, envelope.version, envelope.payload)

    def parse(self, event_type: str, version: int, payload: dict[str, Any]) -> Payload:
        schema = self.schemas.get((event_type, version))
        if schema is None:
            raise PoisonEvent(f"unknown event type or version: {event_type} v{version}")
        try:
            return schema.model_validate(payload)
        except ValidationError as exc:
            raise PoisonEvent(
                f"invalid {event_type} v{version} payload: {exc.error_count()} errors") from None


@dataclass(frozen=True)
class Envelope:
    event_id: uuid.UUID
    event_type: str
    version: int
    aggregate_type: str
    aggregate_id: str
    occurred_at: datetime
    payload: dict[str, Any]
    # The payload as its schema reads it, once a catalogue decoded the envelope (`EventCatalog.decode`).
    parsed: Payload | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> bytes:
        return json.dumps({
            "event_id": str(self.event_id),
            "event_type": self.event_type,
            "version": self.version,
            "aggregate_type": self.aggregate_type,
            "aggregate_id": self.aggregate_id,
            "occurred_at": self.occurred_at.isoformat(),
            "payload": self.payload,
        }, separators=(",", ":")).encode()

    def headers(self) -> list[tuple[str, bytes]]:
        return [("event_id", str(self.event_id).encode()), ("event_type", self.event_type.encode())]

    def key(self) -> bytes:
        """The Kafka key: the aggregate's id, so an aggregate's events share a partition, in order."""
        return self.aggregate_id.encode()


class EventCatalog:
    """The event types of every aggregate a process reads, by aggregate type: what decodes its messages."""

    def __init__(self, *types: EventTypes) -> None:
        self.types = {kinds.aggregate_type: kinds for kinds in types}
        # The aggregate each event type belongs to: its id is the event's Kafka key.
        self.owner = {event_type: kinds.aggregate_type for kinds in types for event_type, _ in kinds.schemas}

    def parse(self, envelope: Envelope) -> Payload:
        """The envelope's payload as its schema reads it (validated once per envelope)."""
        kinds = self.types.get(envelope.aggregate_type)
        if kinds is None:
            raise PoisonEvent(f"unknown aggregate type: {envelope.aggregate_type}")
        return kinds.payload_of(envelope)

    def decode(self, raw: bytes | None) -> Envelope:
        """Parse and validate a Kafka message value; raises PoisonEvent when it cannot be applied."""
        try:
            data = decode_json(raw)
        except JsonInputError as exc:
            raise PoisonEvent(f"undecodable message: {exc}") from None
        try:
            if not isinstance(data, dict):
                raise TypeError(type(data).__name__)
            for kinds in self.types.values():
                if kinds.legacy_id_field is not None and kinds.legacy_id_field in data:
                    data.update(aggregate_type=kinds.aggregate_type, aggregate_id=data[kinds.legacy_id_field])
            aggregate_type = str(data["aggregate_type"])
            if aggregate_type not in self.types:
                raise ValueError(aggregate_type)
            envelope = Envelope(
                event_id=uuid.UUID(data["event_id"]),
                event_type=str(data["event_type"]),
                version=_version(data["version"]),
                aggregate_type=aggregate_type,
                aggregate_id=self.types[aggregate_type].normal_id(str(data["aggregate_id"])),
                occurred_at=datetime.fromisoformat(data["occurred_at"]),
                payload=_payload(data["payload"]),
            )
        except JsonInputError as exc:
            raise PoisonEvent(f"undecodable payload: {exc}") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PoisonEvent(f"undecodable message: {type(exc).__name__}") from None
        owner = self.owner.get(envelope.event_type, aggregate_type)  # an unknown type is refused just below
        if owner != aggregate_type:
            raise PoisonEvent(
                f"wrong aggregate: {envelope.event_type} is an event of a {owner}, not a {aggregate_type}")
        # Validated once: the worker applies what it decoded.
        parsed = self.types[aggregate_type].parse(envelope.event_type, envelope.version, envelope.payload)
        return replace(envelope, parsed=parsed)


def envelope_json_of_text(event_id: bytes, event_type: bytes, version: bytes, aggregate_type: bytes,
                          aggregate_id: bytes, occurred_at: bytes, payload: bytes) -> bytes:
    """`Envelope.to_json()` of an `events` row given as PostgreSQL's text of its columns, UTF-8 (what the
    relay reads), spliced together without parsing: the uuid, the integer and the jsonb text are valid JSON
    already, strings are quoted (escaped only when they need it) and the timestamp is rewritten in
    Python's isoformat. `EventCatalog.decode` reads both into the same Envelope; the relay spends no time
    taking apart and putting together again what it only forwards."""
    return b'{"event_id":"%s","event_type":%s,"version":%s,"aggregate_type":%s,"aggregate_id":%s,' \
           b'"occurred_at":"%s","payload":%s}' % (
               event_id, _json_name(event_type), b"%d" % int(version), _json_name(aggregate_type),
               _json_bytes(aggregate_id), iso_timestamp(occurred_at), payload)


_json_string = json.encoder.encode_basestring_ascii  # what json.dumps does with a str
# Bytes json.dumps writes as they are: printable ASCII but `"` and `\`.
_NEEDS_ESCAPE = re.compile(rb'[^\x20\x21\x23-\x5b\x5d-\x7e]')
# PostgreSQL's ISO text of a timestamptz: date, time, optional fraction (no trailing zeros), hour offset
# and optional minutes.
_PG_TIMESTAMP = re.compile(rb"(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?([+-]\d\d)(?::(\d\d))?")


def _json_bytes(text_: bytes) -> bytes:
    """json.dumps of a string given as UTF-8 bytes."""
    if _NEEDS_ESCAPE.search(text_) is None:
        return b'"' + text_ + b'"'
    return _json_string(text_.decode()).encode()


@lru_cache(maxsize=256)
def _json_name(name: bytes) -> bytes:
    """`_json_bytes` of an event or aggregate type: a few names, each quoted once."""
    return _json_bytes(name)


def iso_timestamp(pg_text: bytes) -> bytes:
    """`datetime.isoformat()` of a timestamptz given as PostgreSQL's text (DateStyle ISO); rewritten as text
    in the usual shape, through datetime otherwise (a years-BC or seconds-offset stamp)."""
    if len(pg_text) == 29 and pg_text[10] == 0x20 and pg_text[19] == 0x2E and pg_text[26] in b"+-":
        return b"%sT%s:00" % (pg_text[:10], pg_text[11:])  # microseconds and a whole-hour offset, mostly
    match = _PG_TIMESTAMP.fullmatch(pg_text)
    if match is None:
        return datetime.fromisoformat(pg_text.decode()).isoformat().encode()
    day, clock, fraction, hours, minutes = match.groups()
    return b"%sT%s%s%s:%s" % (day, clock, b"." + fraction.ljust(6, b"0") if fraction else b"", hours,
                              minutes or b"00")


# The `events` column each envelope field and each header is written from, for a relay that is told
# rather than coded (Debezium's Outbox Event Router, outbox_relay/debezium.py); the payload is `payload`.
ENVELOPE_COLUMNS = {"event_id": "id", "event_type": "event_type", "version": "version",
                    "aggregate_type": "aggregate_type", "aggregate_id": "aggregate_id",
                    "occurred_at": "created_at"}
HEADER_COLUMNS = {"event_id": "id", "event_type": "event_type", "traceparent": "traceparent"}


def envelope_from_row(row: Any) -> Envelope:
    """The envelope of an `events` row (id, aggregate_type, aggregate_id, event_type, version, payload,
    created_at)."""
    return Envelope(event_id=row.id, event_type=row.event_type, version=row.version,
                    aggregate_type=row.aggregate_type, aggregate_id=str(row.aggregate_id),
                    occurred_at=row.created_at, payload=row.payload)


def new_event_id() -> uuid.UUID:
    return new_id()


def _payload(value: Any) -> dict[str, Any]:
    """An envelope's payload: a JSON object, or the text of one. Our relays put the object in; Debezium's
    Outbox Event Router (RELAY_MODE=debezium, outbox_relay/debezium.py) puts the `payload` column's jsonb
    text in as a string, since its JSON expansion drops nulls and empty arrays. Both decode alike."""
    if isinstance(value, str):
        value = decode_json(value)
    if not isinstance(value, dict):
        raise TypeError(f"payload is a {type(value).__name__}")
    return dict(value)


def _version(value: Any) -> int:
    """An envelope's version: an integer, or its digits; never a float or a bool that int() would
    truncate into one (`true` is no version 1, nor is 1.5, and 1e400 overflows)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"version is a {type(value).__name__}")
    return int(value)
