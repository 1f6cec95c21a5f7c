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
from app.metrics import WebMetrics
from app.ratelimits import RateLimits
from app.rooms.hub import RoomHub, RoomReads
from app.services.answers import AnswerBatcher

sock = Sock()


@dataclass
class Services:
    """The process's connections to PostgreSQL, Redis and Kafka, opened on first use."""

    config: Config

    @cached_property
    def engine(self) -> Engine:
        return get_engine(self.config.database_url, pool_size=self.config.web_db_pool)

    @cached_property
    def db_sessions(self) -> sessionmaker[Session]:
        return session_factory(self.engine)

    @cached_property
    def redis(self) -> redis.Redis:
        # Blocking pool: thousands of sockets reconnecting at once wait for a connection instead of failing.
        pool = redis.BlockingConnectionPool.from_url(
            self.config.redis_url, max_connections=self.config.web_redis_pool, timeout=10,
            socket_timeout=5, socket_connect_timeout=2, health_check_interval=30)
        return redis.Redis(connection_pool=pool)

    @cached_property
    def kafka_admin(self):
        return make_admin(self.config)

    @cached_property
    def answer_batcher(self) -> AnswerBatcher:
        return AnswerBatcher(self.engine, max_batch=self.config.answer_batch_max)

    @cached_property
    def rate_limits(self) -> RateLimits:
        return RateLimits(self.config, connection_pool=self.redis.connection_pool)

    @cached_property
    def metrics(self) -> WebMetrics:
        return WebMetrics()

    @cached_property
    def room_hub(self) -> RoomHub:
        return RoomHub(self.redis, room_reads(self), interval_s=self.config.leaderboard_interval_ms / 1000,
                       metrics=self.metrics)


def init_services(app: Flask, config: Config) -> None:
    app.extensions["livequiz"] = Services(config)

    @app.teardown_appcontext
    def close_db(_exc: BaseException | None) -> None:
        db = g.pop("db", None)
        if db is not None:
            db.close()


def room_reads(live: Services) -> RoomReads:
    """Wire the hub's reads to the leaderboard in Redis and the standings in PostgreSQL."""
    from app.leaderboards.keys import SessionKeys
    from app.leaderboards.reads import read_page
    from app.rooms.hub import LEADERBOARD_SIZE
    from app.services.rooms import question_results, standings
    from app.services.sessions import describe_session

    def with_db(read):
        def call(*args):
            db = live.db_sessions()
            try:
                return read(db, *args)
            finally:
                db.close()
        return call

    def snapshot(db, session_id, participant_ids):
        shared = {"session": describe_session(db, session_id),
                  "leaderboard": read_page(db, live.redis, session_id, LEADERBOARD_SIZE, 0)}
        return shared, standings(db, session_id, participant_ids)

    top = with_db(lambda db, session_id, limit: read_page(db, live.redis, session_id, limit, 0))
    return RoomReads(stream_key=lambda session_id: SessionKeys.of(session_id).room, top=top,
                     question_results=with_db(question_results), snapshot=with_db(snapshot))


def services() -> Services:
    return current_app.extensions["livequiz"]


def get_db() -> Session:
    """The request's database session, opened lazily and closed at teardown."""
    if "db" not in g:
        g.db = services().db_sessions()
    return g.db
