"""Real services: a freshly migrated test database, a Redis database, topics of this run."""
from __future__ import annotations

import pytest
import redis as redis_lib
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app import create_app
from app.config import Config
from app.db import get_engine
from app.kafka import broker_answers, ensure_topics
from tests.conftest import service_unreachable
from tests.helpers import Api


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
            connection.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{url.database}"'))
    except Exception as exc:  # noqa: BLE001 - any failure here means PostgreSQL is not usable
        service_unreachable("PostgreSQL", exc)
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def database(config: Config) -> str:
    recreate_database(config.database_url)
    command.upgrade(alembic_config(config.database_url), "head")
    return config.database_url


@pytest.fixture(scope="session")
def engine(database: str):
    return get_engine(database)


@pytest.fixture(scope="session")
def redis_client(config: Config) -> redis_lib.Redis:
    client = redis_lib.Redis.from_url(config.redis_url)
    try:
        client.ping()
    except redis_lib.RedisError as exc:
        service_unreachable("Redis", exc)
    client.flushdb()
    return client


@pytest.fixture(scope="session")
def kafka_topics(config: Config) -> Config:
    if not broker_answers(config, timeout_s=10):
        service_unreachable("Kafka", RuntimeError(config.kafka_bootstrap_servers))
    ensure_topics(config)
    return config


@pytest.fixture(scope="session")
def app(database: str, config: Config):
    return create_app(config)


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture()
def api(client) -> Api:
    return Api(client)
