"""Clients shared by a web process, created unbound and attached in `create_app`."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import redis
from flask import Flask, current_app, g
from flask_sock import Sock
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.config import Config
from app.db import get_engine, session_factory
from app.kafka import make_admin

sock = Sock()


@dataclass
class Services:
    """The process's connections to PostgreSQL, Redis and Kafka, opened on first use."""

    config: Config

    @cached_property
    def engine(self) -> Engine:
        return get_engine(self.config.database_url, pool_size=self.config.web_threads)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return session_factory(self.engine)

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.config.redis_url, socket_timeout=5, socket_connect_timeout=2,
                                    health_check_interval=30, max_connections=self.config.web_threads * 2)

    @cached_property
    def kafka_admin(self):
        return make_admin(self.config)


def init_services(app: Flask, config: Config) -> None:
    app.extensions["livequiz"] = Services(config)

    @app.teardown_appcontext
    def close_db(_exc: BaseException | None) -> None:
        db = g.pop("db", None)
        if db is not None:
            db.close()


def services() -> Services:
    return current_app.extensions["livequiz"]


def get_db() -> Session:
    """The request's database session, opened lazily and closed at teardown."""
    if "db" not in g:
        g.db = services().sessions()
    return g.db
