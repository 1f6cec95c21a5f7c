"""The relay process: `build_relay` (its composition root, which tests use too) and `main`.

`python -m outbox_relay` (console script `quiz-outbox-relay`) builds its clients from the
environment and runs `Relay.run()` until SIGTERM or SIGINT. RELAY_MODE picks the relay: `wal`
(the default: `capture.WalRelay`, or `slot_stream.StreamingWalRelay` with RELAY_WAL_READ=stream, which
waits on its replication stream rather than LISTEN) or `poll` (`poll.PollRelay`); under `debezium`
Kafka Connect relays and this process only keeps the outbox's partitions (`debezium.DebeziumHousekeeper`).
Exit codes: 0 after a clean stop, 2 on a configuration error, which includes wal mode on a server that
cannot decode the WAL (wal_level is not logical, or the role lacks REPLICATION): the line says so and
names RELAY_MODE=poll.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

from sqlalchemy.exc import DBAPIError

from app.core.config import Config, load_config_or_exit
from app.core.db import get_engine
from app.core.kafka import make_producer
from app.core.logs import configure_logging
from app.core.processing import run_until_signalled
from app.core.tracing import configure_tracing, flush_tracing, register_tracing_metrics
from app.core.tracing import enabled as tracing_enabled
from outbox_relay import metrics
from outbox_relay.capture import CaptureUnavailable, WalRelay, check_capture_possible
from outbox_relay.debezium import DebeziumHousekeeper
from outbox_relay.listener import OutboxListener
from outbox_relay.poll import PollRelay
from outbox_relay.relay import Relay, RelayStats
from outbox_relay.slot_stream import StreamingWalRelay

log = logging.getLogger("outbox_relay")

# Test hook only: sleep this long between delivery and the mark, so a test can SIGKILL there.
TEST_PAUSE_ENV = "RELAY_TEST_PAUSE_BEFORE_MARK_S"


def _pause_before_mark() -> Any:
    pause_s = float(os.environ.get(TEST_PAUSE_ENV, "0") or 0)
    if pause_s <= 0:
        return None

    def pause(ids: list[Any]) -> None:
        log.warning("test hook: %d events delivered, pausing %.1f s before marking them", len(ids), pause_s)
        time.sleep(pause_s)

    return pause


def build_relay(config: Config, *, leader_lock: bool = True, serve_metrics: bool = True) -> Relay:
    """The real engine, producer and LISTEN connection from `config`, wired into a Relay."""
    stats = RelayStats()
    if serve_metrics and config.relay_metrics_port > 0:
        relay_metrics = metrics.RelayMetrics()
        if tracing_enabled():
            register_tracing_metrics(relay_metrics.registry)
        relay_metrics.serve(config.relay_metrics_port, config.metrics_host)
        stats.observers.append(relay_metrics)
    if config.relay_mode == "debezium":
        return DebeziumHousekeeper(
            get_engine(config.database_url, pool_size=2),
            poll_interval_s=config.relay_poll_interval_s,
            retention_hours=config.relay_retention_hours,
            partition_days_ahead=config.relay_partition_days_ahead,
            leader_lock=leader_lock,
            stats=stats,
        )
    relay_class: type[PollRelay] = PollRelay
    if config.relay_mode == "wal":
        relay_class = StreamingWalRelay if config.relay_wal_read == "stream" else WalRelay
    return relay_class(
        get_engine(config.database_url, pool_size=2),
        make_producer(config, **{"client.id": "outbox_relay"}),
        config.kafka_topic,
        batch_size=config.relay_batch_size,
        poll_interval_s=config.relay_poll_interval_s,
        retention_hours=config.relay_retention_hours,
        partition_days_ahead=config.relay_partition_days_ahead,
        leader_lock=leader_lock,
        listener=None if relay_class is StreamingWalRelay else OutboxListener(config.database_url),
        stats=stats,
        before_mark=_pause_before_mark(),
        producer_factory=lambda: make_producer(config, **{"client.id": "outbox_relay"}),
    )


def _exit_unless_capture_possible(relay: Relay) -> None:
    """Wal mode on a server that cannot decode: exit 2 with one line. PostgreSQL down: the loop retries."""
    try:
        with relay.engine.connect() as conn:
            check_capture_possible(conn)
    except CaptureUnavailable as exc:
        print(f"config error: RELAY_MODE=wal needs logical decoding: {exc}; set RELAY_MODE=poll",
              file=sys.stderr)
        raise SystemExit(2) from None
    except DBAPIError:
        pass


def main() -> int:
    config = load_config_or_exit()
    configure_logging(config, "relay")
    configure_tracing(config, "relay")
    relay = build_relay(config)
    if config.relay_mode == "wal":
        _exit_unless_capture_possible(relay)
    mode = f"wal mode, {config.relay_wal_read}" if config.relay_mode == "wal" else f"{config.relay_mode} mode"
    log.info("relaying %s to %s topic %s (%s, batch %d)", config.database_url.rsplit("@", 1)[-1],
             config.kafka_bootstrap_servers, config.kafka_topic, mode, config.relay_batch_size)
    run_until_signalled(relay)
    log.info("stopped after publishing %d events in %d batches", relay.stats.published_total,
             relay.stats.batches_total)
    flush_tracing()
    return 0
