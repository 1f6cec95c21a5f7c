"""The score ingest process: `build_ingest` (its composition root, which tests use too) and `main`.

`python -m score_ingest` (console script `quiz-score-ingest`) builds its clients from the environment
and runs `ScoreIngest.run()` until SIGTERM or SIGINT, finishing the batch in hand.
"""
from __future__ import annotations

import logging
import os

from app.core.batch_consumer import serve
from app.core.config import Config
from app.core.db import get_engine
from app.core.kafka import make_consumer, make_producer
from score_ingest.ingest import ScoreIngest

log = logging.getLogger("score_ingest")

# Test hook only: die like SIGKILL after a batch was committed and before its offsets were stored.
TEST_EXIT_ENV = "INGEST_TEST_EXIT_AFTER_COMMIT"


def _exit_after_commit() -> None:
    log.warning("%s: exiting with 137", TEST_EXIT_ENV)
    logging.shutdown()
    os._exit(137)


def build_ingest(config: Config, *, engine=None, group_id: str | None = None, **options) -> ScoreIngest:
    """The real consumer, producer and PostgreSQL clients from `config`, wired into a ScoreIngest."""
    if os.environ.get(TEST_EXIT_ENV) == "1":
        options.setdefault("after_commit", _exit_after_commit)
    engine = engine or get_engine(config.database_url, pool_size=2,
                                   prepared=config.database_prepared_statements)
    ingest = ScoreIngest(config, make_consumer(config, group_id=group_id or config.score_consumer_group),
                         make_producer(config), engine, **options)
    ingest.subscribe()
    return ingest


def main() -> int:
    return serve("ingest", build_ingest, lambda config: config.ingest_metrics_port)
