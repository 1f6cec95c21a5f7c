"""JSON that comes from outside the process: request bodies, socket messages, Kafka messages.

One decoder for all of them, so every surface refuses the same inputs the same way: whatever is
malformed (bad bytes, bad syntax, nesting deeper than any real document) raises `JsonInputError`, a
ValueError naming the reason, and never RecursionError or anything else a caller would not expect.
The nesting bound also keeps later recursive work on the value (validation, GraphQL variable
coercion) shallow.
"""
from __future__ import annotations

import json
from typing import Any

# No document of this service nests deeper than a few levels; 32 leaves room for users' metadata.
MAX_DEPTH = 32


class JsonInputError(ValueError):
    """The input is not a JSON document this service accepts; the message says why."""


def nesting_depth(value: Any) -> int:
    """How deeply arrays and objects nest in a decoded value (a scalar is 0), without recursion."""
    deepest = 0
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def decode_json(raw: str | bytes | bytearray | None, *, max_depth: int = MAX_DEPTH) -> Any:
    """The value `raw` holds; JsonInputError when it is not JSON or nests deeper than `max_depth`."""
    if raw is None or len(raw) == 0:
        raise JsonInputError("empty: expected a JSON document")
    try:
        value = json.loads(raw)
    except UnicodeDecodeError:
        raise JsonInputError("invalid_encoding: JSON must be UTF-8") from None
    except RecursionError:
        raise JsonInputError(f"too_deep: nested deeper than {max_depth} levels") from None
    except ValueError as exc:
        raise JsonInputError(f"invalid_json: {exc}") from None
    if nesting_depth(value) > max_depth:
        raise JsonInputError(f"too_deep: nested deeper than {max_depth} levels")
    return value
