"""Prometheus metrics of the web process.

They are not served on the public port. Each gunicorn worker writes its metrics to files in
PROMETHEUS_MULTIPROC_DIR (gunicorn.conf.py makes one when it is not set), and the gunicorn master
serves their sum on 127.0.0.1:WEB_METRICS_PORT: one endpoint whatever the number of workers, which
outlives any worker's restart.
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# The per-hop histograms of an event's journey share these: commit → produced (the relay's), produced →
# applied (the worker's), applied → pushed and click → socket (the web's, below).
HOP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

HTTP_REQUESTS = Counter("http_requests_total", "HTTP requests answered", ["method", "route", "status"])
HTTP_LATENCY = Histogram("http_request_duration_seconds", "Time to answer an HTTP request",
                         ["method", "route"],
                         buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
ANSWERS_ACCEPTED = Counter("answers_accepted_total", "Answers recorded (201)")
EVENTS_WRITTEN = Counter("events_written_total", "Events written to the outbox", ["event_type"])
WS_CONNECTIONS = Gauge("ws_connections", "Open WebSocket connections", multiprocess_mode="livesum")
WS_SENT = Counter("ws_messages_sent_total", "WebSocket messages sent", ["type"])
SCORE_WRITES = Counter("score_writes_total",
                       "Score submissions of the leaderboard service, by outcome and source",
                       ["outcome", "source"])
RATE_LIMITED = Counter("rate_limited_total", "Requests refused by a rate limit", ["rule"])
RATE_LIMIT_UNAVAILABLE = Counter("rate_limit_unavailable_total",
                                 "Requests let through unchecked because Redis could not count them")
PASSWORD_HASHES = Gauge("password_hashes_running", "Password hashes being computed off the event loop",
                        multiprocess_mode="livesum")
GRAPHQL_FRAGMENTS_MEASURED = Counter("graphql_fragments_measured_total",
                                     "GraphQL fragments measured for depth and cost "
                                     "(each once per operation)")
# Database-wide, refreshed by every worker's timers (app/web/timers.py); the highest of the live
# workers.
OUTBOX_LAG = Gauge("outbox_lag_seconds",
                   "Age of the oldest unpublished event (from PostgreSQL, every few seconds)",
                   multiprocess_mode="livemax")
OUTBOX_UNPUBLISHED = Gauge("outbox_unpublished_events",
                           "Events not yet published (from PostgreSQL, every few seconds)",
                           multiprocess_mode="livemax")
WS_DROPPED = Counter("ws_messages_dropped_total", "WebSocket messages dropped: the client's buffer was full",
                     ["type"])
# The last hops of an event's journey, where a web process pushes its room note to sockets
# (app/web/rooms/journey.py), by aggregate.
APPLIED_TO_PUSHED = Histogram("push_applied_to_pushed_seconds",
                              "From the worker's room note (its stream entry's time) to its push to sockets",
                              ["aggregate"], buckets=HOP_BUCKETS)
CLICK_TO_SOCKET = Histogram("push_click_to_socket_seconds",
                            "From the event's row (created_at, in the request's transaction) to its push to "
                            "sockets: the whole journey", ["aggregate"], buckets=HOP_BUCKETS)


class WebMetrics:
    """The hooks the rooms call; kept as one object so tests can count without Prometheus."""

    ws_connections = WS_CONNECTIONS

    @staticmethod
    def ws_sent(kind: str) -> None:
        WS_SENT.labels(kind.partition(":")[0]).inc()  # a board's kinds carry its id: one label each

    @staticmethod
    def ws_dropped(kind: str) -> None:
        WS_DROPPED.labels(kind.partition(":")[0]).inc()
