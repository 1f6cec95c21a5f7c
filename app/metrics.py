"""Prometheus metrics of the web process.

Under gunicorn with several workers, set PROMETHEUS_MULTIPROC_DIR (the stack scripts do) so that
`/metrics` adds up every worker; without it, the one process's own registry is served.
"""
from __future__ import annotations

import logging
import os
from typing import Callable

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, REGISTRY,
                               generate_latest)
from prometheus_client import multiprocess
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)

HTTP_REQUESTS = Counter("http_requests_total", "HTTP requests answered", ["method", "route", "status"])
HTTP_LATENCY = Histogram("http_request_duration_seconds", "Time to answer an HTTP request", ["method", "route"],
                         buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
ANSWERS_ACCEPTED = Counter("answers_accepted_total", "Answers recorded (201)")
EVENTS_WRITTEN = Counter("events_written_total", "Events written to the outbox", ["event_type"])
WS_CONNECTIONS = Gauge("ws_connections", "Open WebSocket connections", multiprocess_mode="livesum")
WS_SENT = Counter("ws_messages_sent_total", "WebSocket messages sent", ["type"])
SCORE_WRITES = Counter("score_writes_total", "Score submissions of the leaderboard service, by outcome and source",
                       ["outcome", "source"])
RATE_LIMITED = Counter("rate_limited_total", "Requests refused by a rate limit", ["rule"])
RATE_LIMIT_UNAVAILABLE = Counter("rate_limit_unavailable_total",
                                 "Requests let through unchecked because Redis could not count them")
PASSWORD_HASHES = Gauge("password_hashes_running", "Password hashes being computed off the event loop",
                        multiprocess_mode="livesum")
GRAPHQL_FRAGMENTS_MEASURED = Counter("graphql_fragments_measured_total",
                                     "GraphQL fragments measured for depth and cost (each once per operation)")
WS_DROPPED = Counter("ws_messages_dropped_total", "WebSocket messages dropped: the client's buffer was full",
                     ["type"])


class WebMetrics:
    """The hooks the rooms call; kept as one object so tests can count without Prometheus."""

    ws_connections = WS_CONNECTIONS

    @staticmethod
    def ws_sent(kind: str) -> None:
        WS_SENT.labels(kind.partition(":")[0]).inc()  # a board's kinds carry its id: one label each

    @staticmethod
    def ws_dropped(kind: str) -> None:
        WS_DROPPED.labels(kind.partition(":")[0]).inc()


class OutboxCollector:
    """Outbox lag and backlog, computed from PostgreSQL at scrape time (one indexed query).

    Every web process reports the same database-wide values; nothing is kept between scrapes,
    so a failed query only leaves the two gauges out of that one scrape.
    """

    def __init__(self, outbox_lag: Callable[[], tuple[float, int]]):
        self.outbox_lag = outbox_lag

    def collect(self):
        try:
            lag_s, unpublished = self.outbox_lag()
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail because PostgreSQL did
            log.warning("outbox gauges left out of this scrape: %s", type(exc).__name__)
            return
        yield GaugeMetricFamily("outbox_lag_seconds", "Age of the oldest unpublished event (from PostgreSQL)",
                                value=lag_s)
        yield GaugeMetricFamily("outbox_unpublished_events", "Events not yet published (from PostgreSQL)",
                                value=unpublished)


def render_latest(*computed) -> tuple[bytes, str]:
    """The process's (or, multiprocess, every worker's) metrics plus `computed` collectors."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    if computed:
        # A registry per scrape: computed collectors hold no state between scrapes.
        extra = CollectorRegistry(auto_describe=False)
        for collector in computed:
            extra.register(collector)
        body += generate_latest(extra)
    return body, CONTENT_TYPE_LATEST
