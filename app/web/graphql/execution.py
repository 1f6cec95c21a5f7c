"""Running a GraphQL operation: its document parsed and validated once per text (cached), its size,
depth and cost bounded before anything runs, its errors in GraphQL's format with the REST API's
codes and never a stack trace.

Parsing and validating costs several times the execution of a top-10 query, so the checked document
of each distinct query text is kept (LRU, `DOCUMENT_CACHE` texts), including the errors of an
invalid one. A text is bounded before it is validated: `MAX_QUERY_CHARS` characters, `MAX_TOKENS`
tokens (the parser stops there), `MAX_FIELDS` fields and fragment spreads, `MAX_ALIASES` aliases and
`MAX_FRAGMENTS` fragments as written, and the depth and least cost of its operations.

An operation is measured in one pass over the document, each fragment once whatever the number of
its spreads (a chain of fragments that each spread the next twice costs its length, not 2^length):
depth counts nested selections (fragments included); cost counts each field once, times the entries
a list of entries may hold (its `limit`, `top` or `end - start + 1`, or its default), a fragment
counted as often as it is spread. Each request measures its operation again with its variables. A
mutation runs at most GRAPHQL_MAX_MUTATIONS root fields.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    Visitor,
    execute,
    get_operation_ast,
    parse,
    validate,
    visit,
)
from graphql.language import IntValueNode, VariableNode
from redis import RedisError
from sqlalchemy.exc import OperationalError

from app.core.errors import ServiceError, TooManyRequests
from app.core.metrics import GRAPHQL_FRAGMENTS_MEASURED
from app.web.api.core import ApiError
from app.web.graphql.schema import SCHEMA

log = logging.getLogger(__name__)

DOCUMENT_CACHE = 512
MAX_QUERY_CHARS = 20_000
MAX_TOKENS = 5_000
MAX_FIELDS = 300  # fields and fragment spreads as written; the standard introspection query has 72
MAX_ALIASES = 30
MAX_FRAGMENTS = 50  # graphql-core's check that fields merge compares fragments pairwise: 400 cost 0.4 s
MAX_DEPTH = 15  # the standard introspection query is 13 deep; the schema itself, 4
MAX_COST = 20_000
# Fields whose entries a list argument sizes (limit, top, range, start..end), and their defaults.
_LIST_DEFAULT = 10
_SIZING = ("start", "end", "range", "limit", "top")
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
        known = _check(text)
        with self._lock:
            self._known[text] = known
            while len(self._known) > self.size:
                self._known.popitem(last=False)
        return known


DOCUMENTS = Documents()


def _check(text: str) -> Checked:
    """A text parsed and validated, or its errors. Validating costs ten times what parsing and
    measuring do (30 ms at the most within the limits), so what is too big is refused before."""
    try:
        document = parse(text, no_location=False, max_tokens=MAX_TOKENS)
    except GraphQLError as exc:
        return Checked(None, [error_view(exc, "graphql_parse_failed")])
    too_big = _too_big(document)
    for operation in (d for d in document.definitions if isinstance(d, OperationDefinitionNode)):
        # Whatever its variables, it is too deep or too costly: refused before it costs a validation.
        too_big = too_big or _too_deep_or_costly(measure(document, operation, None))
    problems = [] if too_big else validate(SCHEMA, document)
    return Checked(None if too_big or problems else document,
                   too_big or [error_view(e, "graphql_validation_failed") for e in problems])


class _Written(Visitor):
    """Counts what a document writes (graphql-core's visitor walks without recursion)."""

    def __init__(self):
        super().__init__()
        self.fields = self.aliases = self.fragments = 0

    def enter_field(self, node: FieldNode, *_: Any) -> None:
        self.fields += 1
        self.aliases += node.alias is not None

    def enter_fragment_spread(self, *_: Any) -> None:
        self.fields += 1

    def enter_fragment_definition(self, *_: Any) -> None:
        self.fragments += 1


def _too_big(document: DocumentNode) -> list[dict[str, Any]]:
    """The refusal of a document that writes more than any client needs, before validation (whose
    cost grows with it, faster than linearly); none for the others."""
    written = _Written()
    visit(document, written)
    if written.fields > MAX_FIELDS:
        return [refusal("too_many_fields", f"the document selects {written.fields} fields and fragments; "
                                           f"at most {MAX_FIELDS}")]
    if written.aliases > MAX_ALIASES:
        return [refusal("too_many_aliases",
                        f"the document has {written.aliases} aliases; at most {MAX_ALIASES}")]
    if written.fragments > MAX_FRAGMENTS:
        return [refusal("too_many_fragments", f"the document defines {written.fragments} fragments; "
                                              f"at most {MAX_FRAGMENTS}")]
    return []


def refusal(code: str, message: str, **extensions: Any) -> dict[str, Any]:
    """An error of an operation that does not run, in GraphQL's format."""
    return {"message": message, "extensions": {"code": code, **extensions}}


def error_view(error: GraphQLError, code: str | None = None) -> dict[str, Any]:
    """A GraphQL error as the response shows it: message, locations, path, extensions.code."""
    original = error.original_error
    view = error.formatted
    extensions = dict(view.get("extensions") or {})
    if isinstance(original, (ServiceError, ApiError)):
        extensions.update(code=original.code, **original.extra)
        if isinstance(original, TooManyRequests):
            extensions["retry_after_s"] = original.retry_after_s
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


def checked_operation(text: Any, operation_name: Any, variables: Any, *,
                      max_mutations: int) -> tuple[DocumentNode, OperationDefinitionNode]:
    """The validated document and its operation; RequestError for anything that cannot run."""
    if not isinstance(text, str) or not text.strip():
        raise RequestError([refusal("bad_request", "send the operation as `query`")])
    if len(text) > MAX_QUERY_CHARS:
        raise RequestError([refusal("query_too_large",
                                    f"the query is longer than {MAX_QUERY_CHARS} characters")])
    if operation_name is not None and not isinstance(operation_name, str):
        raise RequestError([refusal("bad_request", "operationName is a string")])
    if variables is not None and not isinstance(variables, dict):
        raise RequestError([refusal("bad_request", "variables is an object")])
    found = DOCUMENTS.checked(text)
    if found.document is None:
        raise RequestError(found.errors)
    operation = get_operation_ast(found.document, operation_name)
    if operation is None:
        raise RequestError([refusal("bad_request", "name the operation to run (operationName)")])
    size = measure(found.document, operation, variables or {})
    if too_big := _too_deep_or_costly(size):
        raise RequestError(too_big)
    if operation.operation == OperationType.MUTATION and size.root_fields > max_mutations:
        raise RequestError([refusal("too_many_mutations", f"the operation runs {size.root_fields} mutations; "
                                                          f"at most {max_mutations}")])
    return found.document, operation


def _too_deep_or_costly(size: Size) -> list[dict[str, Any]]:
    if size.depth > MAX_DEPTH:
        return [refusal("query_too_deep", f"the operation is {size.depth} levels deep; at most {MAX_DEPTH}")]
    if size.cost > MAX_COST:
        return [refusal("query_too_costly", f"the operation would cost {size.cost}; at most {MAX_COST}")]
    return []


@dataclass(frozen=True)
class Size:
    depth: int  # nested selections
    cost: int  # fields, times the entries of the lists they are in
    root_fields: int  # what the operation runs at its root (distinct response keys)


def measure(document: DocumentNode, operation: OperationDefinitionNode,
            variables: dict[str, Any] | None) -> Size:
    """The operation's size, in one pass over what it uses of the document: each fragment is measured
    once (in an order where what it spreads comes first) and every spread of it reuses that. Without
    `variables` (not known yet), a list a variable sizes counts one entry: the least the cost can be."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}

    def size(field: FieldNode) -> int:
        arguments = {a.name.value: a.value for a in field.arguments or ()}
        values = {}
        for name, node in arguments.items():
            if isinstance(node, IntValueNode):
                values[name] = int(node.value)
            elif isinstance(node, VariableNode) and variables is None:
                if name in _SIZING:
                    return 1  # not known yet: the least it can be
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

    # (height, cost, response keys at its root) of each fragment; one not measured yet is part of a
    # cycle or unknown, which validation refuses.
    measured: dict[str, tuple[int, int, frozenset[str]]] = {}

    def walk(selection_set: SelectionSetNode | None) -> tuple[int, int, frozenset[str]]:
        if selection_set is None:
            return 0, 0, frozenset()
        height, cost, keys = 0, 0, set()
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                inner_height, inner_cost, _ = walk(selection.selection_set)
                height = max(height, 1 + inner_height)
                cost += 1 + size(selection) * inner_cost
                keys.add((selection.alias or selection.name).value)
                continue
            if isinstance(selection, InlineFragmentNode):
                inner = walk(selection.selection_set)
            else:
                inner = measured.get(selection.name.value, (0, 0, frozenset()))
            height, cost = max(height, inner[0]), cost + inner[1]
            keys.update(inner[2])
        return height, cost, frozenset(keys)

    for name in _spread_order(operation.selection_set, fragments):
        measured[name] = walk(fragments[name].selection_set)
        GRAPHQL_FRAGMENTS_MEASURED.inc()
    height, cost, keys = walk(operation.selection_set)
    return Size(height, cost, len(keys))


def _spread_order(selection_set: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode]) -> list[str]:
    """The fragments `selection_set` uses, directly or through others, each once and after every
    fragment it spreads itself (a depth-first post-order, kept on a list rather than the call stack:
    a chain of fragments may be hundreds long)."""
    order: list[str] = []
    entered: set[str] = set()
    stack: list[tuple[str | None, list[str]]] = [(None, _spreads(selection_set))]
    while stack:
        name, pending = stack[-1]
        if pending:
            spread = pending.pop()
            if spread not in entered and spread in fragments:
                entered.add(spread)
                stack.append((spread, _spreads(fragments[spread].selection_set)))
            continue
        stack.pop()
        if name is not None:
            order.append(name)
    return order


def _spreads(selection_set: SelectionSetNode) -> list[str]:
    """The names of the fragments spread anywhere inside `selection_set` (not inside those fragments)."""
    names: list[str] = []
    sets = [selection_set]
    while sets:
        for selection in sets.pop().selections:
            if isinstance(selection, FragmentSpreadNode):
                names.append(selection.name.value)
            elif selection.selection_set is not None:
                sets.append(selection.selection_set)
    return names


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
