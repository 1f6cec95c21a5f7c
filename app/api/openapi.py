"""The OpenAPI 3 document, built from the routes' own registrations and schemas."""
from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, jsonify

from app.api.core import ROUTE_DOCS

bp = Blueprint("openapi", __name__, url_prefix="/api/v1")

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message"],
                             "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}},
}


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
        for status in (400, 401) if doc.auth else (400,):
            responses.setdefault(str(status), {"description": "error",
                                               "content": {"application/json": {
                                                   "schema": {"$ref": "#/components/schemas/Error"}}}})
        operation: dict[str, Any] = {"summary": doc.summary, "parameters": parameters, "responses": responses}
        if doc.auth:
            operation["security"] = [{"bearer": []}]
        if doc.body is not None:
            schema = doc.body.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[doc.body.__name__] = schema
            operation["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{doc.body.__name__}"}}}}
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
