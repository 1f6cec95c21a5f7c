"""Fixtures of the benchmark suite (`make bench`); not collected by `make test`.

The suite owns: database `quiz_bench` (dropped and recreated, `alembic upgrade head`), the Redis keys
of prefix `bench.<run>:` (REDIS_KEY_PREFIX; on one Redis in logical database 14, on a cluster in
database 0; only they are deleted, never a whole database), topics `bench.<run>.events` / `.dlq` /
`.bare` (deleted at the end), and its own gunicorn, relay and worker processes on a free loopback port.
Each benchmark starts from that stack running and caught up, whatever ran before it (`known_stack`,
tests/bench/stack.py).
"""
from __future__ import annotations

import os
import time
import uuid

import pytest
import redis as redis_lib
from alembic import command
from confluent_kafka.admin import AdminClient

from app.core import redis_keys
from app.core.config import Config, load_config
from app.core.db import get_engine
from app.core.kafka import broker_answers, ensure_topics
from tests.bench import report, timeline
from tests.bench.stack import STANDARD, BenchStack, stop_leftover_load
from tests.bench.support import BENCH_DATABASE, BENCH_REDIS_DB, env_int, machine, raise_nofile, tmpdir
from tests.conftest import CLIENT_ADDRESS_LIMITS, alembic_config, drop_replication_slots, recreate_database
from tests.helpers import drop_prefix_keys

RUN = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]
# The longest a benchmark waits for the stack to catch up with what ran before it.
SETTLE_S = env_int("BENCH_SETTLE_S", 300)

# The per-address limits of the bench stack. Every load generator connects from 127.0.0.1, and the
# fan-out benchmark alone holds 10,000 sockets from it at once (BENCH_FANOUT_ALL): a per-address limit
# the test suite's CLIENT_ADDRESS_LIMITS leaves too low for that (a cap on open sockets per address
# must allow at least 10,000 here) is raised in this dict.
BENCH_ADDRESS_LIMITS = {**CLIENT_ADDRESS_LIMITS}


def _bench_config() -> Config:
    base = load_config()
    run = RUN.replace("-", "")
    return base.replace(
        database_url=base.database_url.rsplit("/", 1)[0] + "/" + BENCH_DATABASE,
        redis_url=base.redis_url.rsplit("/", 1)[0] + f"/{0 if base.redis_cluster_nodes else BENCH_REDIS_DB}",
        redis_key_prefix=f"bench.{run}:",
        kafka_topic=f"bench.{run}.events", kafka_dlq_topic=f"bench.{run}.dlq",
        kafka_consumer_group=f"bench.{run}.cache-worker",
        score_topic=f"bench.{run}.scores", score_dlq_topic=f"bench.{run}.scores.dlq",
        score_consumer_group=f"bench.{run}.score-ingest", change_topic=f"bench.{run}.changes",
        ingest_metrics_port=0,
        question_get_ready_s=0.0,  # players answer the moment a question opens
        relay_metrics_port=0, worker_metrics_port=0,
        secret_key="bench-secret-" + uuid.uuid4().hex + uuid.uuid4().hex,
        log_level="warning", **BENCH_ADDRESS_LIMITS)


@pytest.fixture(scope="session")
def bench_config() -> Config:
    raise_nofile()
    config = _bench_config()
    # This process's keys, and those of every process it starts (stack_env passes the config on).
    os.environ["REDIS_KEY_PREFIX"] = config.redis_key_prefix
    redis_keys.configure(config)
    return config


def _recreate(database_url: str) -> None:
    """Drop and create the bench database. An autovacuum worker busy in it (after the growth benchmark's
    10,000,000 rows) cannot be terminated by a non-superuser; taking its tables' locks makes it cancel."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import DBAPIError

    deadline = time.monotonic() + 120
    while True:
        try:
            engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
            with engine.connect() as db:
                db.execute(text("SET lock_timeout = '10s'"))
                db.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            engine.dispose()
        except DBAPIError:
            pass  # no such database yet, or the lock timed out: DROP DATABASE says which
        try:
            recreate_database(database_url)
            return
        except BaseException:  # noqa: BLE001 - pytest.fail raises an OutcomeException
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


@pytest.fixture(scope="session")
def bench_db(bench_config: Config):
    _recreate(bench_config.database_url)
    command.upgrade(alembic_config(bench_config.database_url), "head")
    yield bench_config.database_url
    drop_replication_slots(bench_config.database_url)


@pytest.fixture(scope="session")
def bench_engine(bench_db: str):
    return get_engine(bench_db)


@pytest.fixture(scope="session")
def bench_redis(bench_config: Config):
    from app.core.redis_client import make_redis

    client = make_redis(bench_config, socket_timeout=None) if bench_config.redis_cluster_nodes else \
        redis_lib.Redis.from_url(bench_config.redis_url)
    client.ping()
    drop_prefix_keys(client)  # this run's keys only (left by nothing yet; the habit of every suite)
    yield client
    drop_prefix_keys(client)


@pytest.fixture(scope="session")
def bench_topics(bench_config: Config):
    if not broker_answers(bench_config, timeout_s=10):
        pytest.fail("Kafka is unreachable; start the stack with `make services`", pytrace=False)
    ensure_topics(bench_config)
    yield bench_config
    # Only this run's topics: bench.<run>.*
    prefix = bench_config.kafka_topic.rsplit(".", 1)[0] + "."
    admin = AdminClient({"bootstrap.servers": bench_config.kafka_bootstrap_servers})
    mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    if mine:
        for future in admin.delete_topics(mine, operation_timeout=30).values():
            try:
                future.result()
            except Exception:  # noqa: BLE001 - cleanup is best effort
                pass


@pytest.fixture(scope="session")
def stack(bench_config, bench_db, bench_redis, bench_topics):
    stack = BenchStack(bench_config, tmpdir("livequiz-bench-"))
    report.RESULTS["logs"] = str(stack.logs)
    report.RESULTS["machine"] = machine(get_engine(bench_db), bench_redis)
    try:
        for name in STANDARD:
            stack.start(name)
        yield stack
    finally:
        stack.stop_all()


@pytest.fixture(autouse=True)
def known_stack(stack, request):
    """Before each benchmark: no load left by an earlier one, the standard processes running with the
    suite's settings, and caught up (see tests/bench/stack.py). What it had to change, and how long it
    waited, go to the results (`stack_before_each`)."""
    changed = stop_leftover_load(stack) + stack.restore()
    waited = stack.settle(SETTLE_S)
    report.RESULTS.setdefault("stack_before_each", []).append(
        {"benchmark": request.node.nodeid, "changed": changed, "settle_s": round(waited, 1)})
    if changed:
        print(f"\nbench stack before {request.node.name}: {'; '.join(changed)}; caught up in {waited:.1f} s")
    return stack


def pytest_sessionstart(session) -> None:
    report.start(RUN)
    timeline.start(RUN)


def pytest_sessionfinish(session, exitstatus) -> None:
    report.finish()
