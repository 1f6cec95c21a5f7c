"""Prometheus metrics of the web process.

Under gunicorn with several workers, set PROMETHEUS_MULTIPROC_DIR (the stack scripts do) so that
`/metrics` adds up every worker; without it, the one process's own registry is served.
"""
from __future__ import annotations

import os

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, REGISTRY,
                               generate_latest)
from prometheus_client import multiprocess

HTTP_REQUESTS = Counter("http_requests_total", "HTTP requests answered", ["method", "route", "status"])
HTTP_LATENCY = Histogram("http_request_duration_seconds", "Time to answer an HTTP request", ["method", "route"],
                         buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
ANSWERS_ACCEPTED = Counter("answers_accepted_total", "Answers recorded (201)")
EVENTS_WRITTEN = Counter("events_written_total", "Events written to the outbox", ["event_type"])
WS_CONNECTIONS = Gauge("ws_connections", "Open WebSocket connections", multiprocess_mode="livesum")
WS_SENT = Counter("ws_messages_sent_total", "WebSocket messages sent", ["type"])
WS_DROPPED = Counter("ws_messages_dropped_total", "WebSocket messages dropped: the client's buffer was full",
                     ["type"])


class WebMetrics:
    """The hooks the rooms call; kept as one object so tests can count without Prometheus."""

    ws_connections = WS_CONNECTIONS

    @staticmethod
    def ws_sent(kind: str) -> None:
        WS_SENT.labels(kind).inc()

    @staticmethod
    def ws_dropped(kind: str) -> None:
        WS_DROPPED.labels(kind).inc()


def render_latest() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
