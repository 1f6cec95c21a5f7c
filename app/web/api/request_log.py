"""A request id, a log line and metrics for every request (the route, never the query string), and its
place in a trace: a span continuing the `traceparent` header's trace while tracing is on, or that header's
context made current while it is off, so the events the request writes carry it (app/core/tracing.py); a
malformed header is ignored."""
from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, g, request
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from app.core import tracing
from app.core.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = logging.getLogger("livequiz.http")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def register(app: Flask) -> None:
    @app.before_request
    def start_request() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        g.request_started = time.perf_counter()
        traceparent = request.headers.get(tracing.TRACEPARENT)
        if tracing.enabled():
            span = tracing.start_span(f"{request.method} {request.path}", traceparent, kind=SpanKind.SERVER,
                                      attributes=lambda: {"http.request.method": request.method})
            g.trace_span = span
            g.trace_token = otel_context.attach(trace.set_span_in_context(span))
        elif traceparent:
            g.trace_token = tracing.attach_remote(traceparent)

    @app.after_request
    def finish_request(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        duration_s = time.perf_counter() - g.get("request_started", time.perf_counter())
        route = request.url_rule.rule if request.url_rule else "unmatched"
        span = g.get("trace_span")
        if span is not None and span.is_recording():
            span.update_name(f"{request.method} {route}")
            span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", response.status_code)
        HTTP_REQUESTS.labels(request.method, route, response.status_code).inc()
        HTTP_LATENCY.labels(request.method, route).observe(duration_s)
        if log.isEnabledFor(logging.INFO):  # the line's fields are gathered only for a line written
            log.info("%s %s %s", request.method, route, response.status_code, extra={
                "request_id": g.get("request_id"), "method": request.method, "route": route,
                "status": response.status_code, "duration_ms": round(duration_s * 1000, 2),
                "session_id": (request.view_args or {}).get("session_id")})
        return response

    @app.teardown_request
    def leave_trace(_exc) -> None:
        span = g.pop("trace_span", None)
        if span is not None:
            span.end()
        tracing.detach(g.pop("trace_token", None))
