"""`python -m cache_worker` / `quiz-cache-worker`: the cache worker process."""
from __future__ import annotations

import logging
import os
import signal
import sys
import time

from prometheus_client import start_http_server

from app.config import load_config_or_exit
from app.db import get_engine
from app.kafka import make_consumer, make_producer
from app.logs import configure_logging

from cache_worker.worker import CacheWorker

log = logging.getLogger("cache_worker")
_LAG_INTERVAL_S = 5.0


def _exit_after_apply() -> None:
    # Test hook: die like SIGKILL after Redis applied a batch and before its offsets were stored.
    log.warning("WORKER_TEST_EXIT_AFTER_APPLY: exiting with 137")
    logging.shutdown()
    os._exit(137)


def main() -> int:
    import redis

    config = load_config_or_exit()
    configure_logging(config, "worker")
    stopping = False

    def stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        log.info("signal %d: finishing the batch", signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    worker = CacheWorker(
        config, make_consumer(config), make_producer(config),
        redis.Redis.from_url(config.redis_url, socket_timeout=5, socket_connect_timeout=2),
        get_engine(config.database_url, pool_size=2),
        after_apply=_exit_after_apply if os.environ.get("WORKER_TEST_EXIT_AFTER_APPLY") == "1" else None,
        should_stop=lambda: stopping)
    if config.worker_metrics_port > 0:
        start_http_server(config.worker_metrics_port, addr="127.0.0.1", registry=worker.metrics.registry)
    worker.subscribe()
    log.info("consuming %s as %s", config.kafka_topic, config.kafka_consumer_group)
    next_lag = 0.0
    try:
        while not stopping:
            worker.run_once()
            if time.monotonic() >= next_lag:
                worker.update_lag()
                next_lag = time.monotonic() + _LAG_INTERVAL_S
    finally:
        worker.close()
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
