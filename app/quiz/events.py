"""The quiz session's events: their names, versions and payloads. Each is written with its change, in one
transaction, by the quiz's use cases (app/quiz/service/), published keyed by the session's id, and
applied to the session's board (app/quiz/board/); a payload says all a consumer needs, without
reading PostgreSQL."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from app.core.events import EventTypes, Payload

QUIZ_SESSION = "quiz_session"


class ParticipantJoined(Payload):
    participant_id: uuid.UUID
    user_id: uuid.UUID
    nickname: str
    player_count: int
    joined_at: datetime


class QuestionOpened(Payload):
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
    image_alt: str | None = None  # what a screen reader says for the picture


class QuestionClosed(Payload):
    question_id: uuid.UUID
    position: int
    correct_choice: int | None  # none for a poll
    choice_counts: list[int]
    closed_at: datetime
    reason: Literal["host", "deadline", "all_answered", "next", "end"]


class ParticipantRemoved(Payload):
    participant_id: uuid.UUID
    player_count: int  # the players still in the room
    removed_at: datetime
    removal: int = 1  # the player's n-th removal (the host may put them back, and remove them again)


class ParticipantRestored(Payload):
    """The host put a removed player back: on the board again with the standing they had."""

    participant_id: uuid.UUID
    nickname: str
    score: int
    score_reached_at: datetime
    player_count: int  # the players in the room, them included
    restored_at: datetime
    removal: int  # the removal it undoes (ParticipantRemoved.removal)


class QuestionExtended(Payload):
    """The host gave the open question more time: its new deadline (answers are judged by it)."""

    question_id: uuid.UUID
    position: int
    deadline: datetime
    added_s: int
    extra_s: int  # the seconds it now has beyond its time limit, all extensions together
    extended_at: datetime


class SessionDeleted(Payload):
    deleted_at: datetime


class AnswerScored(Payload):
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


class SessionEnded(Payload):
    ended_at: datetime


def _session_id(aggregate_id: str) -> str:
    return str(uuid.UUID(aggregate_id))


# (event type, version) -> payload schema. A new version is a new entry; old ones stay readable.
SESSION_EVENTS = EventTypes(QUIZ_SESSION, {
    ("participant_joined", 1): ParticipantJoined,
    ("question_opened", 1): QuestionOpened,
    ("question_closed", 1): QuestionClosed,
    ("answer_scored", 1): AnswerScored,
    ("session_ended", 1): SessionEnded,
    ("participant_removed", 1): ParticipantRemoved,
    ("participant_restored", 1): ParticipantRestored,
    ("question_extended", 1): QuestionExtended,
    ("session_deleted", 1): SessionDeleted,
}, normal_id=_session_id, legacy_id_field="session_id")
