"""The event envelope and payload shapes, versioned; shared by the web app, relay and worker.

An event is written once to the `events` outbox, published by the relay with its aggregate's id (a
quiz session's, or a board's) as its Kafka key, and applied by the cache worker. Consumers must be
able to act on a payload alone, without reading PostgreSQL.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from app.core.ids import new_id
from app.core.json_input import JsonInputError, decode_json
from app.core.poison import PoisonMessage

QUIZ_SESSION = "quiz_session"
LEADERBOARD = "leaderboard"
AGGREGATE_TYPES = (QUIZ_SESSION, LEADERBOARD)


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ParticipantJoined(_Payload):
    participant_id: uuid.UUID
    user_id: uuid.UUID
    nickname: str
    player_count: int
    joined_at: datetime


class QuestionOpened(_Payload):
    question_id: uuid.UUID
    position: int
    text: str
    choices: list[str]
    time_limit_s: int
    points: int
    opened_at: datetime  # when answers open (after the get-ready moment that starts at shown_at)
    deadline: datetime
    question_count: int
    kind: Literal["choice", "true_false", "poll"] = "choice"
    shown_at: datetime | None = None
    image_url: str | None = None


class QuestionClosed(_Payload):
    question_id: uuid.UUID
    position: int
    correct_choice: int | None  # none for a poll
    choice_counts: list[int]
    closed_at: datetime
    reason: Literal["host", "deadline", "all_answered", "next", "end"]


class ParticipantRemoved(_Payload):
    participant_id: uuid.UUID
    player_count: int  # the players still in the room
    removed_at: datetime


class SessionDeleted(_Payload):
    deleted_at: datetime


class AnswerScored(_Payload):
    answer_id: uuid.UUID
    participant_id: uuid.UUID
    user_id: uuid.UUID
    nickname: str
    question_id: uuid.UUID
    choice: int
    correct: bool
    points: int
    streak: int
    answered_ms: int
    answered_at: datetime
    total: int


class SessionEnded(_Payload):
    ended_at: datetime


# --- a leaderboard's events: each carries the resulting state, never a delta --------------------

class BoardConfigured(_Payload):
    """A board's configuration as of `revision` (board_created, board_updated)."""
    revision: int
    name: str
    sort_order: Literal["asc", "desc"]
    update_mode: str
    reset_period: str
    max_entries: int | None


class BoardDeleted(_Payload):
    deleted_at: datetime


class EntryChanged(_Payload):
    period: str
    player_id: str
    score: int
    tie_seq: int
    version: int
    display_name: str | None
    reached_at: datetime
    metadata: dict[str, Any] | None = None  # the entry's (absent from events written before it was carried)


class EntryRemoved(_Payload):
    period: str
    player_id: str
    version: int


class PeriodOpened(_Payload):
    period: str
    starts_at: datetime
    ends_at: datetime | None


class Standing(_Payload):
    rank: int
    player_id: str
    display_name: str | None
    score: int


class PeriodClosed(_Payload):
    period: str
    closed_at: datetime
    entry_count: int
    top: list[Standing]  # the final top N, never the whole board: an event stays small
    # The period's bounds in the board's zone and its label, as every read shows them
    # (app/leaderboards/spans.py `period_span`); absent from events written before they were added.
    starts_at: str | None = None
    ends_at: str | None = None
    label: str | None = None


# (event type, version) -> payload schema. A new version is a new entry; old ones stay readable.
PAYLOAD_SCHEMAS: dict[tuple[str, int], type[_Payload]] = {
    ("participant_joined", 1): ParticipantJoined,
    ("question_opened", 1): QuestionOpened,
    ("question_closed", 1): QuestionClosed,
    ("answer_scored", 1): AnswerScored,
    ("session_ended", 1): SessionEnded,
    ("participant_removed", 1): ParticipantRemoved,
    ("session_deleted", 1): SessionDeleted,
    ("board_created", 1): BoardConfigured,
    ("board_updated", 1): BoardConfigured,
    ("board_deleted", 1): BoardDeleted,
    ("entry_changed", 1): EntryChanged,
    ("entry_removed", 1): EntryRemoved,
    ("period_opened", 1): PeriodOpened,
    ("period_closed", 1): PeriodClosed,
}
EVENT_TYPES = sorted({event_type for event_type, _ in PAYLOAD_SCHEMAS})
# The aggregate each event type belongs to: its id is the event's Kafka key.
AGGREGATE_OF = {event_type: QUIZ_SESSION for event_type in (
    "participant_joined", "question_opened", "question_closed", "answer_scored", "session_ended",
    "participant_removed", "session_deleted")} | {
    event_type: LEADERBOARD for event_type in (
        "board_created", "board_updated", "board_deleted", "entry_changed", "entry_removed", "period_opened",
        "period_closed")}
CURRENT_VERSION = {event_type: max(v for t, v in PAYLOAD_SCHEMAS if t == event_type) for event_type in EVENT_TYPES}


class PoisonEvent(PoisonMessage):
    """A message that can never be applied: undecodable, of an unknown type or version, of the wrong shape."""


@dataclass(frozen=True)
class Envelope:
    event_id: uuid.UUID
    event_type: str
    version: int
    aggregate_type: str
    aggregate_id: str
    occurred_at: datetime
    payload: dict[str, Any]

    @property
    def session_id(self) -> uuid.UUID:
        """The quiz session of a quiz event."""
        return uuid.UUID(self.aggregate_id)

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
        """The Kafka key: the aggregate's id, so a session's or a board's events share one partition, in order."""
        return self.aggregate_id.encode()

    def parsed_payload(self) -> _Payload:
        return self._parsed

    @cached_property
    def _parsed(self) -> _Payload:
        # Validated once per envelope: decoding checks it, and the worker then applies it.
        return parse_payload(self.event_type, self.version, self.payload)


def envelope_json_of_text(event_id: str, event_type: str, version: str, aggregate_type: str, aggregate_id: str,
                          occurred_at: str, payload: str) -> bytes:
    """`Envelope.to_json()` of an `events` row given as PostgreSQL's text of its columns (what the relay
    captures from the WAL), built without parsing the payload: its jsonb text goes in as it is, valid
    JSON already. `decode_envelope` reads both into the same Envelope; the relay spends no time taking
    apart and putting together again what it only forwards."""
    return (f'{{"event_id":"{event_id}","event_type":{_json_string(event_type)},"version":{int(version)},'
            f'"aggregate_type":{_json_string(aggregate_type)},"aggregate_id":{_json_string(aggregate_id)},'
            f'"occurred_at":"{datetime.fromisoformat(occurred_at).isoformat()}","payload":{payload}}}').encode()


_json_string = json.encoder.encode_basestring_ascii  # what json.dumps does with a str


def envelope_from_row(row: Any) -> Envelope:
    """The envelope of an `events` row (id, aggregate_type, aggregate_id, event_type, version, payload,
    created_at)."""
    return Envelope(event_id=row.id, event_type=row.event_type, version=row.version,
                    aggregate_type=row.aggregate_type, aggregate_id=str(row.aggregate_id),
                    occurred_at=row.created_at, payload=row.payload)


def new_event_id() -> uuid.UUID:
    return new_id()


def payload_for(event_type: str, payload: _Payload) -> dict[str, Any]:
    """The JSON-ready payload of `payload`, checked against the schema of `event_type`."""
    expected = PAYLOAD_SCHEMAS[(event_type, CURRENT_VERSION[event_type])]
    if not isinstance(payload, expected):
        raise TypeError(f"{event_type} needs a {expected.__name__} payload")
    return payload.model_dump(mode="json")


def parse_payload(event_type: str, version: int, payload: dict[str, Any]) -> _Payload:
    schema = PAYLOAD_SCHEMAS.get((event_type, version))
    if schema is None:
        raise PoisonEvent(f"unknown event type or version: {event_type} v{version}")
    try:
        return schema.model_validate(payload)
    except ValidationError as exc:
        raise PoisonEvent(f"invalid {event_type} v{version} payload: {exc.error_count()} errors") from None


def decode_envelope(raw: bytes | None) -> Envelope:
    """Parse and validate a Kafka message value; raises PoisonEvent when it cannot be applied."""
    try:
        data = decode_json(raw)
    except JsonInputError as exc:
        raise PoisonEvent(f"undecodable message: {exc}") from None
    try:
        if not isinstance(data, dict):
            raise TypeError(type(data).__name__)
        if "session_id" in data:  # written before boards had events of their own
            data.update(aggregate_type=QUIZ_SESSION, aggregate_id=data["session_id"])
        aggregate_type = str(data["aggregate_type"])
        if aggregate_type not in AGGREGATE_TYPES:
            raise ValueError(aggregate_type)
        aggregate_id = str(data["aggregate_id"])
        if aggregate_type == QUIZ_SESSION:
            aggregate_id = str(uuid.UUID(aggregate_id))
        envelope = Envelope(
            event_id=uuid.UUID(data["event_id"]),
            event_type=str(data["event_type"]),
            version=_version(data["version"]),
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            occurred_at=datetime.fromisoformat(data["occurred_at"]),
            payload=dict(data["payload"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PoisonEvent(f"undecodable message: {type(exc).__name__}") from None
    owner = AGGREGATE_OF.get(envelope.event_type, aggregate_type)  # an unknown type is refused just below
    if owner != aggregate_type:
        raise PoisonEvent(f"wrong aggregate: {envelope.event_type} is an event of a {owner}, not a {aggregate_type}")
    envelope.parsed_payload()
    return envelope


def _version(value: Any) -> int:
    """An envelope's version: an integer, or its digits; never a float or a bool that int() would
    truncate into one (`true` is no version 1, nor is 1.5, and 1e400 overflows)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"version is a {type(value).__name__}")
    return int(value)
