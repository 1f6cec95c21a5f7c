"""Prometheus metrics of the relay, fed by `RelayStats` observers."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from app.core.metrics import HOP_BUCKETS

BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)


class RelayMetrics:
    """One registry per relay, so tests may build several in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.published = Counter("relay_events_published", "Events delivered to Kafka and marked published",
                                 registry=self.registry)
        self.batch_size = Histogram("relay_batch_size", "Events claimed per batch", buckets=BATCH_BUCKETS,
                                    registry=self.registry)
        self.lag_gauge = Gauge("relay_outbox_lag_seconds",
                               "Age of the oldest unpublished event (from PostgreSQL)",
                               registry=self.registry)
        self.unpublished = Gauge("relay_unpublished_events", "Events not yet published",
                                 registry=self.registry)
        self.commit_to_produced = Histogram(
            "relay_commit_to_produced_seconds",
            "From an event's commit (wal mode: its transaction's commit time; poll mode: its row's "
            "created_at, or its commit time with track_commit_timestamp on) to its Kafka message's timestamp",
            ["aggregate"], buckets=HOP_BUCKETS, registry=self.registry)
        self._hops: dict[str, Histogram] = {}
        self.wal_behind = Gauge("relay_wal_behind_bytes",
                                "WAL between the server's position and the slot's confirmed one (wal mode)",
                                registry=self.registry)
        self.republished = Counter("relay_failover_republished",
                                   "Events republished on a PostgreSQL leader that had no slot (wal mode)",
                                   registry=self.registry)

        self.leader_unavailable = Gauge("relay_leader_unavailable",
                                        "1 while the relay reaches no PostgreSQL leader (it backs off and "
                                        "retries), 0 once one answers", registry=self.registry)

    def leader(self, unavailable: bool) -> None:
        self.leader_unavailable.set(int(unavailable))

    def failover_republished(self, count: int) -> None:
        self.republished.inc(count)

    def batch(self, claimed: int, published: int) -> None:
        self.batch_size.observe(claimed)
        self.published.inc(published)

    def produced(self, aggregate_type: str, seconds: float) -> None:
        # Once per event: the labelled child is looked up once per aggregate type.
        child = self._hops.get(aggregate_type)
        if child is None:
            child = self._hops[aggregate_type] = self.commit_to_produced.labels(aggregate_type)
        child.observe(seconds)

    def lag(self, lag_s: float, unpublished: int, wal_behind_bytes: int = 0) -> None:
        self.lag_gauge.set(lag_s)
        self.unpublished.set(unpublished)
        self.wal_behind.set(wal_behind_bytes)

    def serve(self, port: int, addr: str) -> None:
        start_http_server(port, addr=addr, registry=self.registry)
