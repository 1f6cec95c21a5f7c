"""The cache worker process: `build_worker` (its composition root, which tests use too) and `main`.

The one place the worker meets the aggregates: `projections` lists what it applies events to, a quiz
session's board and a leaderboard (app/core/projection.py); cache_worker/worker.py knows nothing else.

`python -m cache_worker` (console script `quiz-cache-worker`) builds its clients from the
environment and runs `CacheWorker.run()` until SIGTERM or SIGINT, finishing the batch in hand.
"""
from __future__ import annotations

import logging
import os

from app.core.batch_consumer import serve
from app.core.config import Config
from app.core.db import get_engine
from app.core.kafka import make_consumer, make_producer
from app.core.projection import Projection
from app.core.redis_client import make_redis
from app.leaderboards.board.projection import LeaderboardProjection
from app.quiz.board.projection import SessionBoardProjection
from cache_worker.worker import CacheWorker

log = logging.getLogger("cache_worker")

# Test hook only: die like SIGKILL after Redis applied a batch and before its offsets were stored.
TEST_EXIT_ENV = "WORKER_TEST_EXIT_AFTER_APPLY"


def _exit_after_apply() -> None:
    log.warning("%s: exiting with 137", TEST_EXIT_ENV)
    logging.shutdown()
    os._exit(137)


def aggregate_types() -> list[str]:
    """The aggregate types whose events the worker applies (what a relay routes to its topic)."""
    return [kind.events.aggregate_type for kind in (SessionBoardProjection, LeaderboardProjection)]


def projections(config: Config, redis_client, engine) -> list[Projection]:
    """What the worker applies events to: a quiz session's board and a leaderboard, in Redis."""
    return [SessionBoardProjection(redis_client, engine), LeaderboardProjection(redis_client, engine, config)]


def build_worker(config: Config, *, redis_client=None, engine=None, group_id: str | None = None,
                 **options) -> CacheWorker:
    """The real consumer, producer, Redis and PostgreSQL clients from `config`, wired into a CacheWorker;
    tests pass their own Redis client or engine, a consumer group or worker options."""
    redis_client = redis_client or make_redis(config)
    engine = engine or get_engine(config.database_url, pool_size=2,
                                   prepared=config.database_prepared_statements)
    worker = CacheWorker(
        config, make_consumer(config, group_id=group_id), make_producer(config), redis_client,
        projections(config, redis_client, engine),
        after_apply=_exit_after_apply if os.environ.get(TEST_EXIT_ENV) == "1" else None, **options)
    worker.subscribe()
    return worker


def main() -> int:
    return serve("worker", build_worker, lambda config: config.worker_metrics_port)
