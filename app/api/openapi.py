"""The OpenAPI 3 document, built from the routes' own registrations and schemas."""
from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, jsonify

from app.api.core import CREDENTIAL_NOT_ALLOWED, ROUTE_DOCS

bp = Blueprint("openapi", __name__, url_prefix="/api/v1")

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message"],
                             "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}},
}


_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
# What any route may answer besides its own statuses.
_COMMON_ERRORS = {400: "invalid_json, invalid_body or invalid_query", 401: "unauthorized: no, expired or revoked token",
                  404: "not_found: no such resource", 413: "body_too_large",
                  414: "uri_too_long: the request line (path and query) is longer than the server reads",
                  415: "unsupported_media_type",
                  429: "too_many_requests: a rate limit (see Retry-After)",
                  503: "unavailable: a store is down; nothing was recorded (see Retry-After)"}


_API_KEY_REFUSED = f"{CREDENTIAL_NOT_ALLOWED}: an API key, which only writes scores"


def _path(rule: str) -> tuple[str, list[str]]:
    names = re.findall(r"<(?:[^:>]+:)?([^>]+)>", rule)
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule), names


def build_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Error": _ERROR_SCHEMA}
    for doc in ROUTE_DOCS:
        path, names = _path(doc.rule)
        parameters = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names]
        if doc.query is not None:
            for name, prop in doc.query.model_json_schema()["properties"].items():
                required = doc.query.model_fields[name].is_required()
                parameters.append({"name": name, "in": "query", "required": required, "schema": prop})
        responses = {str(status): {"description": text} for status, text in doc.responses.items()}
        for status, text in doc.responses.items():
            if status >= 400:
                responses[str(status)]["content"] = _ERROR_CONTENT
        # 414: gunicorn refuses a request line over its limit before the app sees it, whatever the
        # operation (text parameters may be as long as their schemas allow, in UTF-8, percent-encoded).
        common = [400, 414, 429, 503] + ([401] if doc.auth else []) + ([404] if names else []) + (
            [413, 415] if doc.body is not None or doc.raw_body else [])
        for status in common:
            responses.setdefault(str(status), {"description": _COMMON_ERRORS[status], "content": _ERROR_CONTENT})
        if doc.auth and not doc.api_keys:  # an API key is refused here (app/api/core.py credential_not_allowed)
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
    return {
        "openapi": "3.0.3",
        "info": {"title": "Live quiz API", "version": "1"},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


@bp.get("/openapi.json")
def openapi_document():
    return jsonify(build_document())
