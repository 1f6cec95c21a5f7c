"""The cache worker process: `build_worker` (its composition root, which tests use too) and `main`.

`python -m cache_worker` (console script `quiz-cache-worker`) builds its clients from the
environment and runs `CacheWorker.run()` until SIGTERM or SIGINT, finishing the batch in hand.
"""
from __future__ import annotations

import logging
import os

import redis
from prometheus_client import start_http_server

from app.config import Config, load_config_or_exit
from app.db import get_engine
from app.kafka import make_consumer, make_producer
from app.logs import configure_logging
from app.processing import run_until_signalled
from cache_worker.worker import CacheWorker

log = logging.getLogger("cache_worker")

# Test hook only: die like SIGKILL after Redis applied a batch and before its offsets were stored.
TEST_EXIT_ENV = "WORKER_TEST_EXIT_AFTER_APPLY"


def _exit_after_apply() -> None:
    log.warning("%s: exiting with 137", TEST_EXIT_ENV)
    logging.shutdown()
    os._exit(137)


def build_worker(config: Config, *, redis_client=None, engine=None, group_id: str | None = None,
                 **options) -> CacheWorker:
    """The real consumer, producer, Redis and PostgreSQL clients from `config`, wired into a CacheWorker;
    tests pass their own Redis client or engine, a consumer group or worker options."""
    worker = CacheWorker(
        config, make_consumer(config, group_id=group_id), make_producer(config),
        redis_client or redis.Redis.from_url(config.redis_url, socket_timeout=5, socket_connect_timeout=2),
        engine or get_engine(config.database_url, pool_size=2),
        after_apply=_exit_after_apply if os.environ.get(TEST_EXIT_ENV) == "1" else None, **options)
    worker.subscribe()
    return worker


def main() -> int:
    config = load_config_or_exit()
    configure_logging(config, "worker")
    worker = build_worker(config)
    if config.worker_metrics_port > 0:
        start_http_server(config.worker_metrics_port, addr="127.0.0.1", registry=worker.metrics.registry)
    log.info("consuming %s as %s", config.kafka_topic, config.kafka_consumer_group)
    run_until_signalled(worker)
    log.info("stopped")
    return 0
