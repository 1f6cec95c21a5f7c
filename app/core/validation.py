"""The validation every input from outside shares (request bodies and query strings, score messages on
Kafka), by pydantic: strict bodies that refuse unknown fields, text PostgreSQL can store, trimmed text,
JSON's whole numbers, ids.

Each rule is stated once more in JSON Schema beside the code that enforces it, for the OpenAPI
document (app/web/api/openapi.py): what a field's type cannot say (a rule across fields, text that is not
blank) is a `json_schema_extra` or a `WithJsonSchema` next to its validator, and the NUL ban next to
`_storable`. tests/unit/test_openapi.py holds each statement to its validator.
"""
from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import core_schema

from app.core.ids import parse_id

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


def whole(value: Any) -> Any:
    """JSON has numbers, not integers and floats: 5.0 is the integer 5 (so says JSON Schema 2020-12,
    which the document uses); a fraction, true or false stays refused."""
    return int(value) if type(value) is float and value.is_integer() else value


# An integer in a body is strict, but JSON may write it either way. (Last in its Annotated, after
# the bounds, so that the document states the bounds.)
WHOLE = BeforeValidator(whole)
Integer = Annotated[int, WHOLE]


def _an_id(value: str) -> str:
    parse_id(value)
    return value


# An id in a body: text as the API writes ids (the document's `uuid` format).
Id = Annotated[str, AfterValidator(_an_id), WithJsonSchema({"type": "string", "format": "uuid"})]



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
                      {"type": "object", "propertyNames": _NUL_FREE_KEYS,
                       "additionalProperties": _STORABLE_REF}]}


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


def describe_validation(exc: ValidationError) -> str:
    """Where an input first failed its validation, and why: what a 400 (or a socket's error) says."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return f"{where}: {first['msg']}"
