"""Fixtures shared by every kind of test.

Integration and end-to-end tests use the real PostgreSQL, Redis and Kafka that `make up` (or
`make test`) starts. They get a database, Kafka topics and Redis keys of their own, so a running
development stack is left alone. Redis keys are kept apart by a prefix of this run (REDIS_KEY_PREFIX,
`test.<run>:`), which works on a Redis Cluster too (it has only database 0); on one Redis the tests
also use their own logical database (TEST_REDIS_DB). Cleaning up deletes this run's prefix only
(SCAN + UNLINK), never a whole database. A service that cannot be reached fails the test;
it never skips.
"""
from __future__ import annotations

import os
import uuid

import pytest
import redis as redis_lib
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app import create_app
from app.core import redis_keys
from app.core.config import Config, load_config
from app.core.db import get_engine
from app.core.kafka import broker_answers, ensure_topics
from app.core.outbox import drop_slots_of_database
from tests.helpers import CLUSTER, Api, drop_prefix_keys, drop_run_topics

# Each developer running tests beside others can pick a database of their own.
TEST_DATABASE = os.environ.get("TEST_DATABASE", "quiz_test")
TEST_REDIS_DB = int(os.environ.get("TEST_REDIS_DB", "15"))  # one Redis only; a cluster has database 0 alone
# This run's Redis keys. Set in the environment too, so every config loaded in this process and every
# process a test starts (the e2e stack, gunicorn in test_install) uses it.
TEST_RUN = uuid.uuid4().hex[:8]
TEST_KEY_PREFIX = f"test.{TEST_RUN}:"
os.environ["REDIS_KEY_PREFIX"] = TEST_KEY_PREFIX
redis_keys.use_prefix(TEST_KEY_PREFIX)


# Every test client comes from 127.0.0.1: as one address, the whole suite is a school of many
# classes, so the per-address budgets are raised, and so is the cap on its open sockets (the bench
# stack takes these too: its fan-out opens 10,000 sockets); per-user and per-username limits stay as
# shipped (each test's users are new), and the rate-limit tests set their own.
CLIENT_ADDRESS_LIMITS = {
    "rate_login_per_address": "100000/minute", "rate_signup_per_address": "100000/minute",
    "rate_join_per_address": "100000/minute", "rate_join_misses_per_address": "100000/minute",
    "rate_sockets_per_address": "100000/minute", "rate_public_reads_per_address": "100000/minute",
    "rate_api_per_address": "1000000/minute", "ws_max_per_address": 100_000,
}


def _test_config() -> Config:
    base = load_config()
    if CLUSTER and not base.redis_cluster_nodes:
        raise RuntimeError("TEST_CLUSTER=1 without REDIS_CLUSTER_NODES: run it as `make test-cluster`")
    url = base.database_url.rsplit("/", 1)[0] + "/" + TEST_DATABASE
    redis_db = 0 if base.redis_cluster_nodes else TEST_REDIS_DB
    redis_url = base.redis_url.rsplit("/", 1)[0] + f"/{redis_db}"
    run = TEST_RUN
    return base.replace(
        database_url=url,
        redis_url=redis_url,
        redis_key_prefix=TEST_KEY_PREFIX,
        kafka_topic=f"test.{run}.quiz.events",
        kafka_dlq_topic=f"test.{run}.quiz.events.dlq",
        kafka_consumer_group=f"test.{run}.cache-worker",
        score_topic=f"test.{run}.scores",
        score_dlq_topic=f"test.{run}.scores.dlq",
        score_consumer_group=f"test.{run}.score-ingest",
        change_topic=f"test.{run}.changes",
        kafka_partitions=3,
        relay_metrics_port=0,
        worker_metrics_port=0,
        ingest_metrics_port=0,
        web_metrics_port=0,
        graphql_init_wait_s=2.0,
        question_get_ready_s=0.0,  # tests answer at once; the get-ready moment has a test of its own
        secret_key="test-secret-" + uuid.uuid4().hex + uuid.uuid4().hex,
        **CLIENT_ADDRESS_LIMITS,
    )


@pytest.fixture(scope="session")
def config() -> Config:
    config = _test_config()
    redis_keys.configure(config)
    return config


def service_unreachable(name: str, exc: BaseException) -> None:
    """A service the test needs is down: always a failure, never a skip (CI runs with CI=true)."""
    ci = os.environ.get("CI", "").lower() == "true"
    pytest.fail(f"{name} is unreachable ({exc}); start the stack with `make up`"
                + (" [CI]" if ci else ""), pytrace=False)


def alembic_config(database_url: str) -> AlembicConfig:
    cfg = AlembicConfig("alembic.ini")
    cfg.attributes["database_url"] = database_url
    cfg.attributes["configure_logger"] = False
    return cfg


def recreate_database(database_url: str) -> None:
    url = make_url(database_url)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            # The relay's replication slot (wal mode) would forbid the drop.
            drop_slots_of_database(connection, url.database)
            connection.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{url.database}"'))
    except Exception as exc:  # noqa: BLE001 - any failure here means PostgreSQL is not usable
        service_unreachable("PostgreSQL", exc)
    finally:
        admin.dispose()


def drop_replication_slots(database_url: str) -> None:
    """After a run: a replication slot nobody reads any more would keep the server from recycling its WAL
    (gigabytes a day on a developer's machine) until the next run recreated the database."""
    url = make_url(database_url)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            drop_slots_of_database(connection, url.database)
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def database(config: Config):
    recreate_database(config.database_url)
    command.upgrade(alembic_config(config.database_url), "head")
    yield config.database_url
    drop_replication_slots(config.database_url)


@pytest.fixture(scope="session")
def engine(database: str):
    return get_engine(database)


@pytest.fixture()
def db(engine):
    """A database session for a test that calls the use cases directly. They commit as in production:
    each test's rows are its own by their new ids in this run's database, as every other test's are
    (the relay and the worker must see what a test commits, so no test's work is rolled back)."""
    with Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture(scope="session")
def redis_client(config: Config):
    """Redis (or the cluster) with none of this run's keys; they are deleted again at the end."""
    from app.core.redis_client import make_redis

    client = make_redis(config, socket_timeout=None) if config.redis_cluster_nodes else \
        redis_lib.Redis.from_url(config.redis_url)
    try:
        client.ping()
    except redis_lib.RedisError as exc:
        service_unreachable("Redis", exc)
    drop_prefix_keys(client)
    yield client
    drop_prefix_keys(client)


@pytest.fixture(scope="session")
def kafka_topics(config: Config):
    """This run's topics (test.<run>.*), deleted with any other of the run's at its end."""
    if not broker_answers(config, timeout_s=10):
        service_unreachable("Kafka", RuntimeError(config.kafka_bootstrap_servers))
    ensure_topics(config)
    yield config
    drop_run_topics(config, f"test.{TEST_RUN}.")


@pytest.fixture(scope="session")
def app(database: str, config: Config):
    return create_app(config)


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture()
def api(client) -> Api:
    return Api(client)


@pytest.fixture(scope="session")
def live_stack(database, kafka_topics: Config, redis_client):
    """The whole system as processes on this run's database, keys and topics;
    one for the session, shared by the end-to-end tests and the cluster's fault tests
    (tests/live_stack.py)."""
    from tests.live_stack import run_live_stack

    yield from run_live_stack(kafka_topics)


@pytest.fixture()
def topics(kafka_topics: Config) -> Config:
    """Topics and a consumer group of this one test, for tests that read a topic whole."""
    run = uuid.uuid4().hex[:8]
    own = kafka_topics.replace(kafka_topic=f"{kafka_topics.kafka_topic}.{run}",
                               kafka_dlq_topic=f"{kafka_topics.kafka_dlq_topic}.{run}",
                               kafka_consumer_group=f"{kafka_topics.kafka_consumer_group}.{run}",
                               score_topic=f"{kafka_topics.score_topic}.{run}",
                               score_dlq_topic=f"{kafka_topics.score_dlq_topic}.{run}",
                               score_consumer_group=f"{kafka_topics.score_consumer_group}.{run}",
                               change_topic=f"{kafka_topics.change_topic}.{run}")
    ensure_topics(own)
    return own
