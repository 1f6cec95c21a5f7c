"""Fixtures of the tests against Debezium (the run's Connect worker: tests/conftest.py's debezium_connect)."""
from __future__ import annotations

import pytest

from app.core.config import Config
from tests.integration.worker_support import fresh_topics


@pytest.fixture()
def relayed(debezium_connect, engine, kafka_topics) -> Config:
    """Topics of the test's own, with the outbox connector relaying to them from the present on."""
    config = debezium_connect.start(fresh_topics(kafka_topics), engine)
    yield config
    debezium_connect.stop(config, engine)
