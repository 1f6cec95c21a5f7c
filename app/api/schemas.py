"""Request bodies and query strings, validated by pydantic; unknown fields are refused.

Each rule is stated once more in JSON Schema beside the code that enforces it, for the OpenAPI
document (app/api/openapi.py): what a field's type cannot say (a rule across fields, text that is not
blank) is a `json_schema_extra` or a `WithJsonSchema` next to its validator, and the NUL ban next to
`_storable`. tests/unit/test_openapi.py holds each statement to its validator.
"""
from __future__ import annotations

import copy
import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import core_schema

from app.core.ids import parse_id
from app.leaderboards.domain import BOARD_ID, MAX_EXACT, METADATA_MAX_BYTES, check_metadata

# What str.strip() takes off: the characters str.isspace() calls whitespace.
WHITESPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# The document's statement of "not blank": one character that is not whitespace, somewhere.
NOT_BLANK = f"[^{WHITESPACE}]"


def _trimmed(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value.strip()


class _Trimmed:
    """Surrounding whitespace is trimmed only once the text as sent has passed the limits and pattern
    the OpenAPI document states, so nothing the document refuses gets in by being trimmed; text that
    is all whitespace is refused, which the document states as a second pattern."""

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        return core_schema.no_info_after_validator_function(_trimmed, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        return {**handler(schema), "allOf": [{"pattern": NOT_BLANK}]}


TRIMMED = _Trimmed()


def _whole(value: Any) -> Any:
    """JSON has numbers, not integers and floats: 5.0 is the integer 5 (so says JSON Schema 2020-12,
    which the document uses); a fraction, true or false stays refused."""
    return int(value) if type(value) is float and value.is_integer() else value


# An integer in a body is strict, but JSON may write it either way. (Last in its Annotated, after
# the bounds, so that the document states the bounds.)
WHOLE = BeforeValidator(_whole)
Integer = Annotated[int, WHOLE]


def _an_id(value: str) -> str:
    parse_id(value)
    return value


# An id in a body: text as the API writes ids (the document's `uuid` format).
Id = Annotated[str, AfterValidator(_an_id), WithJsonSchema({"type": "string", "format": "uuid"})]
Username = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{3,32}$")]
Nickname = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[^\x00-\x1f\x7f]+$"),
                     TRIMMED]
Title = Annotated[str, StringConstraints(min_length=1, max_length=200), TRIMMED]


def _storable(value: Any) -> Any:
    """Refuse text PostgreSQL cannot store (NUL) or encode (lone surrogates), and numbers JSON cannot
    carry (NaN, Infinity: Python's parser takes them, jsonb does not), anywhere in the input."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite (JSON has no NaN or Infinity)")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text must not contain the NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text must be valid Unicode (no lone surrogates)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _storable(key)
            _storable(item)
    elif isinstance(value, list):
        for item in value:
            _storable(item)
    return value


# The document's statement of _storable (NaN, Infinity and lone surrogates are no JSON text of
# Unicode, so only the NUL needs saying): every text without a pattern of its own gets one that
# leaves NUL out (its lengths inside, so a generator draws from it directly), and free-form JSON
# (metadata) is JSON whose keys and texts leave it out too.
STORABLE_JSON = "StorableJson"
_STORABLE_REF = {"$ref": f"#/components/schemas/{STORABLE_JSON}"}
_NUL_FREE_KEYS = {"pattern": "^[^\\x00]*$"}


def storable_json_schema() -> dict[str, Any]:
    """Any JSON value whose object keys and texts hold no NUL (free-form metadata)."""
    return {"anyOf": [{"type": "string", **_NUL_FREE_KEYS}, {"type": "number"}, {"type": "boolean"},
                      {"type": "null"}, {"type": "array", "items": _STORABLE_REF},
                      {"type": "object", "propertyNames": _NUL_FREE_KEYS, "additionalProperties": _STORABLE_REF}]}


def state_storable(schema: Any) -> Any:
    """`schema` (a JSON Schema, changed in place) with _storable stated wherever it applies."""
    if isinstance(schema, list):
        for item in schema:
            state_storable(item)
    elif isinstance(schema, dict):
        for value in schema.values():
            state_storable(value)
        if schema.get("type") == "string" and not {"pattern", "format", "enum", "const"} & set(schema):
            least, most = schema.get("minLength", 0), schema.get("maxLength", "")
            schema["pattern"] = f"^[^\\x00]{{{least},{most}}}$"
        if schema.get("type") == "object" and schema.get("additionalProperties") is True:
            schema.update(propertyNames=_NUL_FREE_KEYS, additionalProperties=_STORABLE_REF)
    return schema


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def text_is_storable(cls, data: Any) -> Any:
        return _storable(data)


class Query(BaseModel):
    """Query strings arrive as text, so numbers are parsed (not strict)."""
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def text_is_storable(cls, data: Any) -> Any:
        return _storable(data)


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
    {"properties": {"kind": {"const": "true_false"}, "choices": {"anyOf": [{"type": "null"}, {"const": TRUE_FALSE}]},
                    "correct_choice": {"type": "integer", "minimum": 0, "maximum": 1}},
     "required": ["kind", "correct_choice"]},
    {"properties": {"kind": {"const": "poll"}, "choices": {"type": "array"}, "correct_choice": {"type": "null"},
                    "points": {"const": 0}},
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
    model_config = ConfigDict(json_schema_extra=lambda schema: schema.update(anyOf=copy.deepcopy(_KIND_RULES)))

    @field_validator("points", mode="before")
    @classmethod
    def points_is_an_integer(cls, value: Any) -> Any:
        # A Literal takes anything equal to one of its values, false (== 0) too.
        value = _whole(value)
        if type(value) is not int:
            raise ValueError("points must be the integer 0, 1000 or 2000")
        return value

    @model_validator(mode="after")
    def the_kind_decides_the_answers(self) -> "QuestionBody":
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


class JoinBody(Strict):
    nickname: Nickname | None = None


class RejoinBody(Strict):
    nickname: Nickname
    rejoin_code: Annotated[str, StringConstraints(min_length=4, max_length=12, pattern=r"^[A-Za-z0-9 -]+$")]


class LockBody(Strict):
    locked: bool


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

Exact = Annotated[int, Field(ge=-MAX_EXACT, le=MAX_EXACT), WHOLE]
Slug = Annotated[str, StringConstraints(pattern=BOARD_ID.pattern)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$"), TRIMMED]
PlayerId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
SubmissionId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
# JSON Schema has no keyword for the size of a value's encoding: the document states check_metadata's
# bound in words and in an extension keyword.
Metadata = Annotated[dict[str, Any], Field(
    max_length=50, description=f"at most {METADATA_MAX_BYTES} bytes as compact UTF-8 JSON",
    json_schema_extra={"x-max-json-bytes": METADATA_MAX_BYTES}), AfterValidator(check_metadata)]
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
        {"properties": {"update_mode": {"const": "increment"}}}, {"properties": {"self_report_max": {"type": "null"}}}]})

    @model_validator(mode="after")
    def self_report_increments(self) -> "BoardBody":
        if self.self_report_max is not None and self.update_mode != "increment":
            raise ValueError("self_report_max needs update_mode increment (players add to their score)")
        return self


class BoardPatch(Strict):
    name: Label | None = None
    max_entries: MaxEntries | None = None


class ScoreBody(Strict):
    leaderboard_id: Slug
    player_id: PlayerId
    score: Exact
    display_name: Label | None = None
    metadata: Metadata | None = None
    submission_id: SubmissionId | None = None


class ScoreBatchBody(Strict):
    scores: Annotated[list[ScoreBody], Field(min_length=1, max_length=1000)]


class ActionBody(Strict):
    action: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$"), TRIMMED]
    score: Annotated[int, Field(ge=0, le=MAX_EXACT), WHOLE]  # an action adds; the board caps it (self_report_max)
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
        "description": "start and end (ranks, 1-based, inclusive; end at least start and at most start + 99), "
                       "or a cursor alone",
        "anyOf": [{"required": ["start", "end"], "not": {"required": ["cursor"]}},
                  {"required": ["cursor"], "not": {"anyOf": [{"required": ["start"]}, {"required": ["end"]}]}}]})

    @model_validator(mode="after")
    def one_way_to_page(self) -> "RangeQuery":
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


class BoardListQuery(Query):
    after: Annotated[str, StringConstraints(max_length=64)] | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 50


class ActivityQuery(Query):
    limit: Annotated[int, Field(ge=1, le=200)] = 50
