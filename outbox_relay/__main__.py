"""`python -m outbox_relay` (console script `quiz-outbox-relay`): the relay process.

Builds its clients from the environment, installs SIGTERM/SIGINT handlers that only set a flag,
and runs `Relay.run()` until then. Exit codes: 0 after a clean stop, 2 on a configuration error.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from app.config import Config, load_config_or_exit
from app.db import get_engine
from app.logs import configure_logging
from app.kafka import make_producer
from outbox_relay import metrics
from outbox_relay.relay import OutboxListener, Relay, RelayStats

log = logging.getLogger("outbox_relay")

# Test hook only: sleep this long between delivery and the mark, so a test can SIGKILL there.
TEST_PAUSE_ENV = "RELAY_TEST_PAUSE_BEFORE_MARK_S"


def build_relay(config: Config, stopping: threading.Event) -> Relay:
    """The composition root: the real engine, producer and LISTEN connection from `config`."""
    stats = RelayStats()
    if config.relay_metrics_port > 0 and metrics.available():
        relay_metrics = metrics.RelayMetrics()
        relay_metrics.serve(config.relay_metrics_port)
        stats.observers.append(relay_metrics)
    pause_s = float(os.environ.get(TEST_PAUSE_ENV, "0") or 0)

    def pause_before_mark(ids: list[Any]) -> None:
        log.warning("test hook: %d events delivered, pausing %.1f s before marking them", len(ids), pause_s)
        time.sleep(pause_s)

    before_mark = pause_before_mark if pause_s > 0 else None
    return Relay(
        get_engine(config.database_url, pool_size=2),
        make_producer(config, **{"client.id": "outbox_relay"}),
        config.kafka_topic,
        batch_size=config.relay_batch_size,
        poll_interval_s=config.relay_poll_interval_s,
        retention_hours=config.relay_retention_hours,
        listener=OutboxListener(config.database_url),
        stats=stats,
        stopping=stopping,
        before_mark=before_mark,
        producer_factory=lambda: make_producer(config, **{"client.id": "outbox_relay"}),
    )


def main() -> int:
    config = load_config_or_exit()
    configure_logging(config, "relay")
    stopping = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    relay = build_relay(config, stopping)
    log.info("relaying %s to %s topic %s (batch %d)", config.database_url.rsplit("@", 1)[-1],
             config.kafka_bootstrap_servers, config.kafka_topic, config.relay_batch_size)
    relay.run()
    stats = relay.stats
    log.info("stopped after publishing %d events in %d batches", stats.published_total, stats.batches_total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
