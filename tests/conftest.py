"""Fixtures shared by every kind of test.

Integration and end-to-end tests use the real PostgreSQL, Redis and Kafka that `make up` (or
`make test`) starts. They get a database, a Redis logical database and Kafka topics of their own,
so a running development stack is left alone. A service that cannot be reached fails the test;
it never skips.
"""
from __future__ import annotations

import os
import uuid

import pytest

from app.config import Config, load_config

TEST_DATABASE = "quiz_test"
TEST_REDIS_DB = 15


def _test_config() -> Config:
    base = load_config()
    url = base.database_url.rsplit("/", 1)[0] + "/" + TEST_DATABASE
    redis_url = base.redis_url.rsplit("/", 1)[0] + f"/{TEST_REDIS_DB}"
    run = uuid.uuid4().hex[:8]
    return base.replace(
        database_url=url,
        redis_url=redis_url,
        kafka_topic=f"test.{run}.quiz.events",
        kafka_dlq_topic=f"test.{run}.quiz.events.dlq",
        kafka_consumer_group=f"test.{run}.cache-worker",
        kafka_partitions=3,
        relay_metrics_port=0,
        worker_metrics_port=0,
        secret_key="test-secret-" + run,
    )


@pytest.fixture(scope="session")
def config() -> Config:
    return _test_config()


def service_unreachable(name: str, exc: BaseException) -> None:
    """A service the test needs is down: always a failure, never a skip (CI runs with CI=true)."""
    ci = os.environ.get("CI", "").lower() == "true"
    pytest.fail(f"{name} is unreachable ({exc}); start the stack with `make up`"
                + (" [CI]" if ci else ""), pytrace=False)
