"""Request bodies and query strings of the HTTP API, validated by pydantic; unknown fields are refused.

What every input shares (strict bodies, storable and trimmed text, whole numbers, ids) is in
app/core/validation.py, with how the OpenAPI document states it; a score's fields are the leaderboard
service's (app/leaderboards/submissions.py), shared with the score messages on Kafka.
"""
from __future__ import annotations

import copy
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, ConfigDict, Field, StringConstraints, field_validator, model_validator

from app.core.validation import TRIMMED, WHOLE, Id, Integer, Query, Strict, whole
from app.leaderboards.domain import MAX_EXACT
from app.leaderboards.submissions import Label, Metadata, ScoreBody, Slug, SubmissionId

Username = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{3,32}$")]
Nickname = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[^\x00-\x1f\x7f]+$"),
                     TRIMMED]
Title = Annotated[str, StringConstraints(min_length=1, max_length=200), TRIMMED]


class RegisterBody(Strict):
    username: Username
    password: Annotated[str, StringConstraints(min_length=8, max_length=200)]


class LoginBody(Strict):
    username: Annotated[str, StringConstraints(max_length=200)]
    password: Annotated[str, StringConstraints(max_length=200)]


class GuestBody(Strict):
    nickname: Nickname


QUESTION_KINDS = ("choice", "true_false", "poll")
TRUE_FALSE = ["True", "False"]


# The document's statement of the_kind_decides_the_answers, a branch per kind (and, for `choice`,
# per number of answers, so that correct_choice indexes one of them).
_KIND_RULES = [
    {"properties": {"kind": {"const": "true_false"},
                    "choices": {"anyOf": [{"type": "null"}, {"const": TRUE_FALSE}]},
                    "correct_choice": {"type": "integer", "minimum": 0, "maximum": 1}},
     "required": ["kind", "correct_choice"]},
    {"properties": {"kind": {"const": "poll"}, "choices": {"type": "array"},
                    "correct_choice": {"type": "null"}, "points": {"const": 0}},
     "required": ["kind", "choices"]},
    *({"properties": {"kind": {"const": "choice"}, "choices": {"type": "array", "minItems": n, "maxItems": n},
                      "correct_choice": {"type": "integer", "minimum": 0, "maximum": n - 1}},
       "required": ["choices", "correct_choice"]} for n in range(2, 7)),
]


class QuestionBody(Strict):
    """A question: `choice` (one right answer among 2 to 6), `true_false` (the choices are True and
    False; correct_choice 0 or 1) or `poll` (no right answer and no points: the distribution is shown)."""

    kind: Literal["choice", "true_false", "poll"] = "choice"
    text: Annotated[str, StringConstraints(min_length=1, max_length=500), TRIMMED]
    choices: Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=200), TRIMMED]],
                       Field(min_length=2, max_length=6)] | None = None
    correct_choice: Integer | None = None
    time_limit_s: Annotated[int, Field(ge=5, le=240), WHOLE] = 20
    points: Literal[0, 1000, 2000] = 1000
    image_id: Id | None = None
    # What a screen reader says for the picture (players who cannot see it still learn what it shows).
    image_alt: Annotated[str, StringConstraints(max_length=250), TRIMMED] | None = None
    model_config = ConfigDict(
        json_schema_extra=lambda schema: schema.update(anyOf=copy.deepcopy(_KIND_RULES)))

    @field_validator("points", mode="before")
    @classmethod
    def points_is_an_integer(cls, value: Any) -> Any:
        # A Literal takes anything equal to one of its values, false (== 0) too.
        value = whole(value)
        if type(value) is not int:
            raise ValueError("points must be the integer 0, 1000 or 2000")
        return value

    @model_validator(mode="after")
    def the_kind_decides_the_answers(self) -> QuestionBody:
        if self.kind == "true_false":
            if self.choices not in (None, TRUE_FALSE):
                raise ValueError("a true_false question's choices are True and False")
            self.choices = list(TRUE_FALSE)
        elif self.choices is None:
            raise ValueError("choices: 2 to 6 answers")
        if self.kind == "poll":
            if self.correct_choice is not None:
                raise ValueError("a poll has no correct_choice")
            if "points" in self.model_fields_set and self.points != 0:
                raise ValueError("a poll is worth no points")
            self.points = 0
        elif self.correct_choice is None:
            raise ValueError("correct_choice: which answer is right (0 is the first)")
        elif not 0 <= self.correct_choice < len(self.choices):
            raise ValueError(f"correct_choice must index one of the {len(self.choices)} choices")
        return self


class QuizBody(Strict):
    title: Title
    questions: Annotated[list[QuestionBody], Field(min_length=1, max_length=100)]
    # Seconds each question shows before its answers open; absent: the service's QUESTION_GET_READY_S.
    get_ready_s: Annotated[int, Field(ge=0, le=5), WHOLE] | None = None


class JoinBody(Strict):
    nickname: Nickname | None = None


class RejoinBody(Strict):
    nickname: Nickname
    rejoin_code: Annotated[str, StringConstraints(min_length=4, max_length=12, pattern=r"^[A-Za-z0-9 -]+$")]


class LockBody(Strict):
    locked: bool


class ExtendBody(Strict):
    """More time for the open question (host): the deadline moves later by `seconds`. With `deadline`,
    the one the host's screen shows, a retry is safe: a question whose deadline moved since is not
    extended again."""

    seconds: Annotated[int, Field(ge=1, le=60), WHOLE] = 10
    deadline: Annotated[AwareDatetime, Field(strict=False)] | None = None

    @field_validator("deadline", mode="before")
    @classmethod
    def deadline_is_text(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str):  # a number would pass as a Unix time
            raise ValueError("an ISO 8601 date and time with its offset, as the question's deadline reads")
        return value


class AnswerBody(Strict):
    question_id: Id
    choice: Integer


class SocketAnswer(AnswerBody):
    """An answer sent over the room socket: the HTTP body, its message type, and the client's own
    reference for the reply."""
    type: Literal["answer"]
    ref: Annotated[str, StringConstraints(max_length=64)] | int | None = None


class TicketBody(Strict):
    session_id: Id


class JoinCodeQuery(Query):
    join_code: Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]


class LeaderboardQuery(Query):
    limit: Annotated[int, Field(ge=1, le=100)] = 10
    offset: Annotated[int, Field(ge=0, le=1_000_000)] = 0


class AroundQuery(Query):
    around: Annotated[int, Field(ge=0, le=50)] = 5


# --- the leaderboard service ----------------------------------------------------------------------

MaxEntries = Annotated[int, Field(ge=1, le=10_000_000), WHOLE]


class BoardBody(Strict):
    id: Slug
    name: Label
    sort_order: Literal["asc", "desc"]
    update_mode: Literal["replace", "increment", "best"]
    reset_period: Literal["never", "hourly", "daily", "weekly", "monthly"]
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "UTC"
    max_entries: MaxEntries | None = None
    self_report_max: Annotated[int, Field(ge=1, le=MAX_EXACT), WHOLE] | None = None
    metadata: Metadata | None = None
    # The document's statement of self_report_increments.
    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"properties": {"update_mode": {"const": "increment"}}},
        {"properties": {"self_report_max": {"type": "null"}}}]})

    @model_validator(mode="after")
    def self_report_increments(self) -> BoardBody:
        if self.self_report_max is not None and self.update_mode != "increment":
            raise ValueError("self_report_max needs update_mode increment (players add to their score)")
        return self


class BoardPatch(Strict):
    name: Label | None = None
    max_entries: MaxEntries | None = None


class ScoreBatchBody(Strict):
    scores: Annotated[list[ScoreBody], Field(min_length=1, max_length=1000)]


class ActionBody(Strict):
    action: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$"),
                      TRIMMED]
    # An action adds; the board caps it (self_report_max).
    score: Annotated[int, Field(ge=0, le=MAX_EXACT), WHOLE]
    submission_id: SubmissionId | None = None


class ApiKeyBody(Strict):
    name: Label


class PeriodQuery(Query):
    period: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None


class TopQuery(PeriodQuery):
    limit: Annotated[int, Field(ge=1, le=100)] = 10


class RangeQuery(PeriodQuery):
    start: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    end: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    # The longest cursor the service gives (a 128-character player id of 4-byte characters) is under 900.
    cursor: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 10
    # The document's statement of one_way_to_page, but for how far end may be from start, which JSON
    # Schema cannot relate: it says it in words.
    model_config = ConfigDict(json_schema_extra={
        "description": "start and end (ranks, 1-based, inclusive; end at least start and at most "
                       "start + 99), or a cursor alone",
        "anyOf": [{"required": ["start", "end"], "not": {"required": ["cursor"]}},
                  {"required": ["cursor"],
                   "not": {"anyOf": [{"required": ["start"]}, {"required": ["end"]}]}}]})

    @model_validator(mode="after")
    def one_way_to_page(self) -> RangeQuery:
        if self.cursor is not None:
            if self.start is not None or self.end is not None:
                raise ValueError("give start and end, or a cursor, not both")
        elif self.start is None or self.end is None:
            raise ValueError("give start and end (ranks, 1-based, inclusive), or a cursor")
        elif not 0 <= self.end - self.start < 100:
            raise ValueError("end must be at least start and at most start + 99")
        return self


class AroundBoardQuery(PeriodQuery):
    range: Annotated[int, Field(ge=0, le=50)] = 5


class PlayerNameQuery(PeriodQuery):
    name: Annotated[str, StringConstraints(min_length=1, max_length=128), TRIMMED]


class BoardListQuery(Query):
    after: Annotated[str, StringConstraints(max_length=64)] | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 50


class ActivityQuery(Query):
    limit: Annotated[int, Field(ge=1, le=200)] = 50
