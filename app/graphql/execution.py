"""Running a GraphQL operation: its document parsed and validated once per text (cached), its depth
and cost bounded, its errors in GraphQL's format with the REST API's codes and never a stack trace.

Parsing and validating costs several times the execution of a top-10 query, so the checked document
of each distinct query text is kept (LRU, `DOCUMENT_CACHE` texts), including the errors of an
invalid one. Depth counts nested selections (fragments included); cost counts each field once, times
the entries a list of entries may hold (its `limit`, `top` or `end - start + 1`, or its default).
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from graphql import (DocumentNode, FieldNode, FragmentDefinitionNode, FragmentSpreadNode, GraphQLError,
                     InlineFragmentNode, OperationDefinitionNode, OperationType, SelectionSetNode, execute,
                     get_operation_ast, parse, validate)
from graphql.language import IntValueNode, VariableNode

from redis import RedisError
from sqlalchemy.exc import OperationalError

from app.graphql.schema import SCHEMA
from app.services.errors import ServiceError

log = logging.getLogger(__name__)

DOCUMENT_CACHE = 512
MAX_QUERY_CHARS = 20_000
MAX_DEPTH = 15  # the standard introspection query is 13 deep; the schema itself, 4
MAX_COST = 20_000
# Fields whose entries a list argument sizes (limit, top, range, start..end), and their defaults.
_LIST_DEFAULT = 10
_LIST_DEFAULTS = {"top": 10, "leaderboard": 10, "pageAfter": 10, "boardTop": 10, "boards": 50, "around": 11}


class RequestError(Exception):
    """The operation cannot run at all (unparsable, invalid, too deep or too costly): no `data`."""

    def __init__(self, errors: list[dict[str, Any]]):
        super().__init__(errors[0]["message"])
        self.errors = errors


@dataclass(frozen=True)
class Checked:
    document: DocumentNode | None
    errors: list[dict[str, Any]]


class Documents:
    """Parsed and validated documents by query text, for the whole process."""

    def __init__(self, size: int = DOCUMENT_CACHE):
        self.size = size
        self._known: OrderedDict[str, Checked] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def checked(self, text: str) -> Checked:
        with self._lock:
            known = self._known.get(text)
            if known is not None:
                self._known.move_to_end(text)
                self.hits += 1
                return known
        self.misses += 1
        try:
            document = parse(text, no_location=False, max_tokens=5000)
        except GraphQLError as exc:
            known = Checked(None, [error_view(exc, "graphql_parse_failed")])
        else:
            problems = validate(SCHEMA, document)
            known = Checked(None if problems else document, [error_view(e, "graphql_validation_failed")
                                                           for e in problems])
        with self._lock:
            self._known[text] = known
            while len(self._known) > self.size:
                self._known.popitem(last=False)
        return known


DOCUMENTS = Documents()


def error_view(error: GraphQLError, code: str | None = None) -> dict[str, Any]:
    """A GraphQL error as the response shows it: message, locations, path, extensions.code."""
    original = error.original_error
    view = error.formatted
    extensions = dict(view.get("extensions") or {})
    if isinstance(original, ServiceError):
        extensions.update(code=original.code, **original.extra)
        view["message"] = original.message
    elif isinstance(original, (RedisError, OperationalError, TimeoutError)):
        log.warning("a store is unavailable: %s", type(original).__name__)
        view["message"] = "the service is briefly unavailable; try again"
        extensions["code"] = "unavailable"
    elif original is not None and not isinstance(original, GraphQLError):
        log.error("a GraphQL resolver failed", exc_info=original)
        view["message"] = "something went wrong on our side"
        extensions["code"] = "internal_error"
    else:
        extensions.setdefault("code", code or "bad_request")
    view["extensions"] = extensions
    return view


def checked_operation(text: Any, operation_name: Any, variables: Any) -> tuple[DocumentNode, OperationDefinitionNode]:
    """The validated document and its operation; RequestError for anything that cannot run."""
    if not isinstance(text, str) or not text.strip():
        raise RequestError([{"message": "send the operation as `query`", "extensions": {"code": "bad_request"}}])
    if len(text) > MAX_QUERY_CHARS:
        raise RequestError([{"message": f"the query is longer than {MAX_QUERY_CHARS} characters",
                             "extensions": {"code": "query_too_large"}}])
    if operation_name is not None and not isinstance(operation_name, str):
        raise RequestError([{"message": "operationName is a string", "extensions": {"code": "bad_request"}}])
    if variables is not None and not isinstance(variables, dict):
        raise RequestError([{"message": "variables is an object", "extensions": {"code": "bad_request"}}])
    found = DOCUMENTS.checked(text)
    if found.document is None:
        raise RequestError(found.errors)
    operation = get_operation_ast(found.document, operation_name)
    if operation is None:
        raise RequestError([{"message": "name the operation to run (operationName)",
                             "extensions": {"code": "bad_request"}}])
    depth, cost = measure(found.document, operation, variables or {})
    if depth > MAX_DEPTH:
        raise RequestError([{"message": f"the operation is {depth} levels deep; at most {MAX_DEPTH}",
                             "extensions": {"code": "query_too_deep"}}])
    if cost > MAX_COST:
        raise RequestError([{"message": f"the operation would cost {cost}; at most {MAX_COST}",
                             "extensions": {"code": "query_too_costly"}}])
    return found.document, operation


def measure(document: DocumentNode, operation: OperationDefinitionNode, variables: dict[str, Any]) -> tuple[int, int]:
    """(depth, cost) of the operation, fragments followed once per path."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}

    def size(field: FieldNode) -> int:
        arguments = {a.name.value: a.value for a in field.arguments or ()}
        values = {}
        for name, node in arguments.items():
            if isinstance(node, IntValueNode):
                values[name] = int(node.value)
            elif isinstance(node, VariableNode) and isinstance(variables.get(node.name.value), int):
                values[name] = variables[node.name.value]
        if "start" in values and "end" in values:
            return max(1, values["end"] - values["start"] + 1)
        if "range" in values:
            return 2 * values["range"] + 1
        for name in ("limit", "top"):
            if name in arguments:
                return max(1, values.get(name, _LIST_DEFAULT))
        return _LIST_DEFAULTS.get(field.name.value, 1)

    def walk(selection_set: SelectionSetNode | None, depth: int, seen: frozenset[str]) -> tuple[int, int]:
        if selection_set is None:
            return depth - 1, 0
        deepest, cost = depth, 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                inner_depth, inner_cost = walk(selection.selection_set, depth + 1, seen)
                deepest = max(deepest, inner_depth)
                cost += 1 + size(selection) * inner_cost
            elif isinstance(selection, InlineFragmentNode):
                inner_depth, inner_cost = walk(selection.selection_set, depth, seen)
                deepest, cost = max(deepest, inner_depth), cost + inner_cost
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in seen or name not in fragments:
                    continue  # a cycle is a validation error already
                inner_depth, inner_cost = walk(fragments[name].selection_set, depth, seen | {name})
                deepest, cost = max(deepest, inner_depth), cost + inner_cost
        return deepest, cost

    return walk(operation.selection_set, 1, frozenset())


def _never_awaitable(value: Any) -> bool:
    """Resolvers here are synchronous: graphql-core need not inspect every value it resolves."""
    return False


def run(document: DocumentNode, operation: OperationDefinitionNode, variables: dict | None, context: Any,
        root: Any = None) -> dict[str, Any]:
    """Execute a checked operation: {"data": ..., "errors": [...]} (errors only when there are)."""
    result = execute(SCHEMA, document, root_value=root, context_value=context, variable_values=variables,
                     operation_name=operation.name.value if operation.name else None,
                     is_awaitable=_never_awaitable)
    response: dict[str, Any] = {"data": result.data}
    if result.errors:
        response["errors"] = [error_view(e) for e in result.errors]
    return response


def is_subscription(operation: OperationDefinitionNode) -> bool:
    return operation.operation == OperationType.SUBSCRIPTION
