"""The OpenAPI document names every API route the app serves, and says what the server enforces:
each rule of a request's validators is stated in the document (held to them here case by case)."""
import re
import sys

import jsonschema_rs
import pytest
from pydantic import BaseModel, ValidationError

from app import create_app
from app.core import validation
from app.web.api import schemas
from app.web.api.openapi import build_document


def test_every_api_route_is_documented():
    app = create_app()
    document = app.test_client().get("/api/v1/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    served = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.endpoint == "openapi.openapi_document":
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            served.add((path, method.lower()))
    assert served, "no API routes found"
    assert served <= documented, served - documented
    assert documented <= served, documented - served


# --- the document says what the validators enforce --------------------------------------------------

ID = "01234567-89ab-7def-8123-456789abcdef"
Q = {"text": "Why?", "choices": ["a", "b", "c"], "correct_choice": 2}
BOARD = {"id": "b1", "name": "B", "sort_order": "desc", "update_mode": "best", "reset_period": "never"}
SCORE = {"leaderboard_id": "b1", "player_id": "p1", "score": 5}


def _document() -> dict:
    create_app()  # registers every route
    return build_document()


def _stated(document: dict, model: type[BaseModel]) -> jsonschema_rs.Validator:
    """The document's schema of `model` (a body, or a query's parameters as one object)."""
    if issubclass(model, validation.Query):
        parameters = next(op["parameters"] for ops in document["paths"].values() for op in ops.values()
                          if any(p["in"] == "query" and p["name"] in (model.__name__, *model.model_fields)
                                 for p in op["parameters"]) and _query_of(op) == set(model.model_fields))
        properties, rules = {}, []
        for parameter in (p for p in parameters if p["in"] == "query"):
            if parameter.get("explode") and parameter["schema"]["type"] == "object":
                properties.update(parameter["schema"]["properties"])
                rules += parameter["schema"]["anyOf"]
            else:
                properties[parameter["name"]] = parameter["schema"]
        schema = {"type": "object", "properties": properties, "additionalProperties": False,
                  "anyOf": rules or [{}]}
    else:
        schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return jsonschema_rs.Draft202012Validator({**schema, "components": document["components"]},
                                              validate_formats=True)


def _query_of(operation: dict) -> set[str]:
    names = set()
    for parameter in (p for p in operation["parameters"] if p["in"] == "query"):
        names |= (set(parameter["schema"].get("properties", {})) if parameter.get("explode")
                  else {parameter["name"]})
    return names


def _accepts(model: type[BaseModel], value: dict) -> bool:
    try:
        model.model_validate(value)
    except ValidationError:
        return False
    return True


CASES = [
    # text: not blank once trimmed (every kind of whitespace), no NUL anywhere
    (schemas.GuestBody, {"nickname": " Ann "}), (schemas.GuestBody, {"nickname": " "}),
    (schemas.GuestBody, {"nickname": "\u3000\u00a0"}), (schemas.GuestBody, {"nickname": "\ufeff"}),
    (schemas.ApiKeyBody, {"name": "\u2028x"}), (schemas.ApiKeyBody, {"name": "\u205f"}),
    (schemas.QuizBody, {"title": "\x1c\x1f", "questions": [Q]}),
    (schemas.QuizBody, {"title": "T\x00", "questions": [Q]}),
    (schemas.QuizBody, {"title": "T", "questions": [{**Q, "text": "a\x00"}]}),
    (schemas.RegisterBody, {"username": "ann", "password": "12345678\x00"}),
    (schemas.ScoreBody, {**SCORE, "metadata": {"a": [1, {"b": "c"}], "d": None}}),
    (schemas.ScoreBody, {**SCORE, "metadata": {"a": [1, {"b": "c\x00"}]}}),
    (schemas.ScoreBody, {**SCORE, "metadata": {"a\x00": 1}}),
    # ids: 8-4-4-4-12 only
    (schemas.AnswerBody, {"question_id": ID, "choice": 0}),
    (schemas.AnswerBody, {"question_id": ID.upper(), "choice": 0}),
    (schemas.AnswerBody, {"question_id": "{" + ID + "}", "choice": 0}),
    (schemas.AnswerBody, {"question_id": "urn:uuid:" + ID, "choice": 0}),
    (schemas.AnswerBody, {"question_id": ID.replace("-", ""), "choice": 0}),
    (schemas.TicketBody, {"session_id": ID}), (schemas.TicketBody, {"session_id": "x"}),
    (schemas.QuizBody, {"title": "T", "questions": [{**Q, "image_id": ID}]}),
    (schemas.QuizBody, {"title": "T", "questions": [{**Q, "image_id": ID[:-1]}]}),
    # a question's kind decides its answers
    *((schemas.QuizBody, {"title": "T", "questions": [{**Q, **change}]}) for change in (
        {}, {"choices": None}, {"correct_choice": 3}, {"correct_choice": None}, {"correct_choice": -1},
        {"choices": ["a", "b", "c", "d", "e", "f"], "correct_choice": 5},
        {"kind": "choice", "correct_choice": 0}, {"kind": "true_false", "choices": None, "correct_choice": 1},
        {"kind": "true_false", "choices": ["True", "False"], "correct_choice": 0},
        {"kind": "true_false", "choices": ["False", "True"], "correct_choice": 0},
        {"kind": "true_false", "choices": None, "correct_choice": 2},
        {"kind": "true_false", "choices": None, "correct_choice": None},
        {"kind": "poll", "correct_choice": None}, {"kind": "poll", "correct_choice": None, "points": 0},
        {"kind": "poll", "correct_choice": None, "points": 1000}, {"kind": "poll", "correct_choice": 1},
        {"kind": "poll", "correct_choice": None, "choices": None})),
    # self_report_max needs update_mode increment
    (schemas.BoardBody, BOARD), (schemas.BoardBody, {**BOARD, "self_report_max": 10}),
    (schemas.BoardBody, {**BOARD, "self_report_max": None}),
    (schemas.BoardBody, {**BOARD, "update_mode": "increment", "self_report_max": 10}),
    # an integer is a number without a fraction, however JSON writes it; never true or false
    (schemas.QuizBody, {"title": "T", "questions": [{**Q, "time_limit_s": 20.0, "points": 2000.0}]}),
    (schemas.QuizBody, {"title": "T", "questions": [{**Q, "time_limit_s": 20.5}]}),
    (schemas.QuizBody, {"title": "T", "questions": [{**Q, "points": False}]}),
    (schemas.AnswerBody, {"question_id": ID, "choice": True}), (schemas.ScoreBody, {**SCORE, "score": 7.0}),
    # an action adds
    (schemas.ActionBody, {"action": "jump", "score": 0}),
    (schemas.ActionBody, {"action": "jump", "score": -1}), # a range is start and end, or a cursor
    (schemas.RangeQuery, {"start": 1, "end": 2}), (schemas.RangeQuery, {"cursor": "c", "limit": 5}),
    (schemas.RangeQuery, {"start": 1}), (schemas.RangeQuery, {"end": 2}), (schemas.RangeQuery, {}),
    (schemas.RangeQuery, {"cursor": "c", "start": 1}),
    (schemas.RangeQuery, {"cursor": "c", "start": 1, "end": 2}),
]


@pytest.mark.parametrize("model, value", CASES)
def test_the_document_accepts_what_the_server_accepts(model, value):
    stated = _stated(_document(), model)
    assert stated.is_valid(value) == _accepts(model, value), (model.__name__, value)


def test_blank_is_every_character_python_strips():
    whitespace = [c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace()]
    blank = jsonschema_rs.Draft202012Validator({"pattern": validation.NOT_BLANK})
    assert [c for c in whitespace if blank.is_valid(c)] == []
    assert all(blank.is_valid(chr(i)) for i in range(0x3100) if not chr(i).isspace())


def test_every_text_of_a_request_leaves_out_nul():
    document = _document()

    def texts(node):
        if isinstance(node, dict):
            if node.get("type") == "string" and "const" not in node and "enum" not in node:
                yield node
            for value in node.values():
                yield from texts(value)
        elif isinstance(node, list):
            for item in node:
                yield from texts(item)

    bodies = {name: schema for name, schema in document["components"]["schemas"].items() if name != "Error"}
    requests = [bodies] + [
        p["schema"] for ops in document["paths"].values() for op in ops.values() for p in op["parameters"]
        if p["in"] == "query"]
    found = list(texts(requests))
    assert len(found) > 20
    for text in found:
        stated = jsonschema_rs.Draft202012Validator(text, validate_formats=True)
        assert not stated.is_valid("a\x00b") and not stated.is_valid("\x00"), text


def test_the_ids_a_path_names_are_uuids():
    document = _document()
    session = document["paths"]["/api/v1/sessions/{session_id}"]["get"]["parameters"]
    assert session == [{"name": "session_id", "in": "path", "required": True,
                        "schema": {"type": "string", "format": "uuid"}}]
    board = document["paths"]["/api/v1/leaderboards/{board_id}"]["get"]["parameters"][0]
    assert board["schema"] == {"type": "string"}
