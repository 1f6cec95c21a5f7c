"""Request bodies and query strings, validated by pydantic; unknown fields are refused."""
from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

Username = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{3,32}$")]
Nickname = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32,
                                            pattern=r"^[^\x00-\x1f\x7f]+$")]


def _storable(value: Any) -> Any:
    """Refuse text PostgreSQL cannot store (NUL) or encode (lone surrogates), anywhere in the input."""
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


class QuestionBody(Strict):
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
    choices: Annotated[list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]],
                       Field(min_length=2, max_length=6)]
    correct_choice: int
    time_limit_s: Annotated[int, Field(ge=5, le=240)] = 20
    points: Literal[0, 1000, 2000] = 1000

    @model_validator(mode="after")
    def correct_choice_is_a_choice(self) -> "QuestionBody":
        if not 0 <= self.correct_choice < len(self.choices):
            raise ValueError(f"correct_choice must index one of the {len(self.choices)} choices")
        return self


class QuizBody(Strict):
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    questions: Annotated[list[QuestionBody], Field(min_length=1, max_length=100)]


class JoinBody(Strict):
    nickname: Nickname | None = None


class AnswerBody(Strict):
    question_id: str
    choice: int

    @field_validator("question_id")
    @classmethod
    def question_id_is_uuid(cls, value: str) -> str:
        uuid.UUID(value)
        return value


class TicketBody(Strict):
    session_id: Annotated[str, StringConstraints(max_length=64)]


class JoinCodeQuery(Query):
    join_code: Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]


class LeaderboardQuery(Query):
    limit: Annotated[int, Field(ge=1, le=100)] = 10
    offset: Annotated[int, Field(ge=0, le=1_000_000)] = 0


class AroundQuery(Query):
    around: Annotated[int, Field(ge=0, le=50)] = 5
