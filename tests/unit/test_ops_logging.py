"""JSON log lines: one object per line, with the context fields, and never a token."""
from __future__ import annotations

import io
import json
import logging

from app import create_app
from app.core.config import load_config
from app.core.logs import JsonFormatter, configure_logging


def test_a_json_log_line_parses_and_carries_the_context_fields():
    record = logging.LogRecord("cache_worker.worker", logging.WARNING, __file__, 1, "dead-lettered %s",
                               ("x",), None)
    for name, value in {"session_id": "6d1f3a52-2b4f-4e0c-9a57-3e2f0f7c1c11", "event_id": "e1",
                        "request_id": "r1", "reason": "undecodable", "partition": 2, "offset": 40}.items():
        setattr(record, name, value)
    line = JsonFormatter("worker").format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert (parsed["message"] == "dead-lettered x" and parsed["process"] == "worker"
            and parsed["level"] == "warning")
    assert parsed["session_id"] == "6d1f3a52-2b4f-4e0c-9a57-3e2f0f7c1c11" and parsed["event_id"] == "e1"
    assert parsed["request_id"] == "r1" and parsed["partition"] == 2 and parsed["offset"] == 40


def test_the_request_log_has_a_request_id_and_the_route_never_the_query_string(monkeypatch):
    config = load_config({"LOG_FORMAT": "json", "LOG_LEVEL": "info"})
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging(config, "web")
    try:
        response = create_app(config).test_client().get("/healthz?access_token=SECRET-TOKEN-VALUE",
                                                        headers={"Authorization": "Bearer SECRET-HEADER"})
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    assert response.status_code == 200
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    request_line = next(line for line in lines if line.get("route") == "/healthz")
    assert request_line["request_id"] == response.headers["X-Request-ID"]
    assert request_line["status"] == 200 and request_line["method"] == "GET"
    assert "SECRET" not in stream.getvalue()
