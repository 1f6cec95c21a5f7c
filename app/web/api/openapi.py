"""The OpenAPI 3.1 document, built from the routes' own registrations and schemas.

It says what the server enforces, so that a request the document calls valid is refused only for
the state of things (404, 409, 422...), never as malformed: the schemas are pydantic's (JSON Schema
2020-12, which OpenAPI 3.1 uses), with the rules their types cannot say stated beside their
validators (app/web/api/schemas.py, app/core/validation.py); text anywhere leaves out NUL
(`state_storable`); ids are `uuid`.
"""
from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, jsonify
from pydantic import BaseModel

from app.core.validation import STORABLE_JSON, state_storable, storable_json_schema
from app.web.api.core import CREDENTIAL_NOT_ALLOWED, ROUTE_DOCS

bp = Blueprint("openapi", __name__, url_prefix="/api/v1")

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message"],
                             "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}},
}


_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
# What any route may answer besides its own statuses.
_COMMON_ERRORS = {400: "invalid_json, invalid_body or invalid_query",
                  401: "unauthorized: no, expired or revoked token",
                  404: "not_found: no such resource", 413: "body_too_large",
                  414: "uri_too_long: the request line (path and query) is longer than the server reads",
                  415: "unsupported_media_type",
                  429: "too_many_requests: a rate limit (see Retry-After)",
                  503: "unavailable: a store is down; nothing was recorded (see Retry-After)"}


_API_KEY_REFUSED = f"{CREDENTIAL_NOT_ALLOWED}: an API key, which only writes scores"
# Path parameters the views read with parse_uuid (a non-id is 404 there); the other ones (board and
# player ids) are any text, looked up as given.
ID_PARAMETERS = {"session_id", "quiz_id", "participant_id", "key_id"}


def _path(rule: str) -> tuple[str, list[str]]:
    names = re.findall(r"<(?:[^:>]+:)?([^>]+)>", rule)
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule), names


def _path_parameter(name: str) -> dict[str, Any]:
    schema = {"type": "string", "format": "uuid"} if name in ID_PARAMETERS else {"type": "string"}
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """One parameter per field; the fields a rule across them names (the model's `anyOf`) go together
    into one object, exploded into the query string as usual, which carries the rule."""
    schema = model.model_json_schema()
    properties = {name: state_storable(_given(prop)) for name, prop in schema["properties"].items()}
    rules = schema.get("anyOf", [])
    together = sorted({name for rule in rules for name in _named(rule)})
    parameters = [{"name": name, "in": "query", "required": model.model_fields[name].is_required(),
                   "schema": prop} for name, prop in properties.items() if name not in together]
    if together:
        parameters.append({"name": model.__name__, "in": "query", "required": True, "style": "form",
                           "explode": True, "description": schema.get("description", ""),
                           "schema": {"type": "object", "additionalProperties": False, "anyOf": rules,
                                      "properties": {name: properties[name] for name in together}}})
    return parameters


def _given(prop: dict[str, Any]) -> dict[str, Any]:
    """A query field's schema as a value that is sent: a query string has no null (leaving it out is
    how an optional one is not given)."""
    kinds = [kind for kind in prop.get("anyOf", []) if kind != {"type": "null"}]
    if len(kinds) == 1:
        prop = {**{k: v for k, v in prop.items() if k not in ("anyOf", "default")}, **kinds[0]}
    return prop


def _named(rule: Any) -> set[str]:
    """The field names a rule mentions (in `required` and `properties`, at any depth)."""
    if isinstance(rule, list):
        return set().union(*map(_named, rule)) if rule else set()
    if not isinstance(rule, dict):
        return set()
    names = set(rule.get("required", [])) | set(rule.get("properties", {}))
    return names.union(*(_named(value) for key, value in rule.items()
                         if key not in ("required", "properties")))


def build_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Error": _ERROR_SCHEMA}
    for doc in ROUTE_DOCS:
        path, names = _path(doc.rule)
        parameters = [_path_parameter(name) for name in names]
        if doc.query is not None:
            parameters += _query_parameters(doc.query)
        responses = {str(status): {"description": text} for status, text in doc.responses.items()}
        for status in doc.responses:
            if status >= 400:
                responses[str(status)]["content"] = _ERROR_CONTENT
        # 414: gunicorn refuses a request line over its limit before the app sees it, whatever the
        # operation (text parameters may be as long as their schemas allow, in UTF-8, percent-encoded).
        common = [400, 414, 429, 503] + ([401] if doc.auth else []) + ([404] if names else []) + (
            [413, 415] if doc.body is not None or doc.raw_body else [])
        for status in common:
            responses.setdefault(str(status),
                                 {"description": _COMMON_ERRORS[status], "content": _ERROR_CONTENT})
        # An API key is refused here (app/web/api/core.py credential_not_allowed).
        if doc.auth and not doc.api_keys:
            refused = responses.setdefault("403", {"description": "", "content": _ERROR_CONTENT})
            refused["description"] = "; ".join(filter(None, (refused["description"], _API_KEY_REFUSED)))
        operation: dict[str, Any] = {"summary": doc.summary, "parameters": parameters, "responses": responses}
        if doc.auth:
            operation["security"] = [{"bearer": []}]
        if doc.body is not None:
            schema = doc.body.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[doc.body.__name__] = schema
            operation["requestBody"] = {"required": doc.body_required, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{doc.body.__name__}"}}}}
        if doc.raw_body:
            operation["requestBody"] = {"required": True, "content": {
                media: {"schema": {"type": "string", "format": "binary"}} for media in doc.raw_body}}
        for method in doc.methods:
            paths.setdefault(path, {})[method.lower()] = operation
    for name, schema in schemas.items():
        if name != "Error":
            state_storable(schema)
    schemas[STORABLE_JSON] = storable_json_schema()
    return {
        "openapi": "3.1.0",
        "info": {"title": "Live quiz API", "version": "1",
                 "description": "Text anywhere in a request is valid Unicode without NUL; ids are written "
                                "8-4-4-4-12 (`uuid`); JSON nests at most 32 deep."},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


@bp.get("/openapi.json")
def openapi_document():
    return jsonify(build_document())
