"""A request id on every request and one log line per request (path only, never the query)."""
from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, g, request

log = logging.getLogger("livequiz.http")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def register(app: Flask) -> None:
    @app.before_request
    def start_request() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        g.request_started = time.perf_counter()

    @app.after_request
    def finish_request(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        duration_ms = round((time.perf_counter() - g.get("request_started", time.perf_counter())) * 1000, 2)
        route = request.url_rule.rule if request.url_rule else "unmatched"
        log.info("%s %s %s", request.method, route, response.status_code, extra={
            "request_id": g.get("request_id"), "method": request.method, "route": route,
            "status": response.status_code, "duration_ms": duration_ms,
            "session_id": (request.view_args or {}).get("session_id")})
        return response
