"""The ground everything stands on: migrations, the broker, readiness and the Compose file."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml
from alembic import command
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from app import create_app
from app.core.db import application_name, get_engine
from app.core.kafka import ensure_topics, make_consumer, make_producer
from tests.conftest import alembic_config, recreate_database
from tests.helpers import WAIT_S, free_port

ROOT = Path(__file__).resolve().parents[2]
TABLES = {"users", "quizzes", "questions", "quiz_sessions", "quiz_session_participants",
          "participant_answers", "events"}


def test_migrations_upgrade_and_downgrade(config):
    url = config.database_url.rsplit("/", 1)[0] + "/quiz_migrations_test"
    recreate_database(url)
    cfg = alembic_config(url)
    engine = create_engine(url)
    try:
        command.upgrade(cfg, "head")
        assert TABLES <= set(inspect(engine).get_table_names())
        unique = {c["name"] for c in inspect(engine).get_unique_constraints("quiz_session_participants")}
        assert "uq_quiz_session_participants_quiz_session_id_user_id" in unique
        command.downgrade(cfg, "base")
        assert not TABLES & set(inspect(engine).get_table_names())
        command.upgrade(cfg, "head")
        assert TABLES <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_board_ids_that_differ_only_in_case_stop_the_migration_that_forbids_them(config):
    url = config.database_url + "_board_case"  # this run's own scratch database
    recreate_database(url)
    cfg = alembic_config(url)
    engine = create_engine(url)
    board = ("INSERT INTO leaderboards (id, name, sort_order, update_mode, reset_period, timezone) "
             "VALUES (:id, 'x', 'desc', 'best', 'never', 'UTC')")
    try:
        command.upgrade(cfg, "0006")
        with engine.begin() as connection:
            for board_id in ("Foo", "foo"):
                connection.execute(text(board), {"id": board_id})
        with pytest.raises(RuntimeError, match="differ only in case: Foo, foo"):
            command.upgrade(cfg, "head")
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM leaderboards WHERE id = 'foo'"))
        command.upgrade(cfg, "head")
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(text(board), {"id": "FOO"})
    finally:
        engine.dispose()


def test_each_connection_names_its_process_as_pg_stat_activity_shows_it(engine):
    """Through a balancer the client address and port are the balancer's: the name is what is left."""
    with engine.connect() as connection:
        named = connection.execute(text(
            "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()")).scalar()
    assert named == application_name(os.getpid()) == f"livequiz pid {os.getpid()}"


@pytest.mark.parametrize("prepared", [True, False])
def test_prepared_statements_stay_off_the_server_when_the_setting_says_a_pooler_is_in_between(
        config, database, prepared):
    """A pooler in transaction mode (pgbouncer before 1.21) may run the next transaction on another server
    connection, where psycopg's prepared statement does not exist: DATABASE_PREPARED_STATEMENTS off."""
    from app.web.runtime import Runtime

    runtime = Runtime(config.replace(database_prepared_statements=prepared))
    try:
        with runtime.engine.connect() as connection:
            for _ in range(6):  # psycopg prepares a statement run 5 times on one connection
                connection.execute(text("SELECT count(*) FROM events WHERE seq > :n"), {"n": 0})
            kept = connection.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar()
    finally:
        runtime.engine.dispose()
    assert (kept > 0) == prepared, kept


def test_a_standby_refusing_a_write_is_a_lost_connection_and_the_next_one_writes(config, database):
    """Behind the cluster's pg-lb a connection can reach a node that is not the primary (a new leader whose
    Patroni holds the leader key before its promotion ended): the web answers 503, never 500, and the pool
    does not keep the connection. The standby's refusal is played by a read-only session."""
    from sqlalchemy.exc import OperationalError

    from app.web.failures import STORE_UNAVAILABLE

    engine = get_engine(database, pool_size=1)
    try:
        with engine.connect() as connection:
            connection.execute(text("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"))
            connection.commit()
            with pytest.raises(OperationalError) as refused:
                connection.execute(text("SELECT 1 FROM quiz_sessions FOR UPDATE"))
        assert refused.value.orig.sqlstate == "25006" and refused.value.connection_invalidated
        assert isinstance(refused.value, STORE_UNAVAILABLE)  # the web's 503 `unavailable`
        with engine.begin() as connection:  # a new connection, not the refused one: it writes
            connection.execute(text("SELECT 1 FROM quiz_sessions FOR UPDATE"))
    finally:
        engine.dispose()


def test_unpublished_events_have_a_partial_index(engine):
    with engine.connect() as connection:
        definition = connection.execute(text(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_events_unpublished'")).scalar()
    assert "WHERE (published_at IS NULL)" in definition


def test_a_message_goes_through_the_real_broker(kafka_topics):
    # A topic of its own: the event topic carries only real events, which other tests read whole.
    config = kafka_topics.replace(kafka_topic=kafka_topics.kafka_topic + ".roundtrip",
                                  kafka_dlq_topic=kafka_topics.kafka_dlq_topic + ".roundtrip")
    ensure_topics(config)
    key, value = uuid.uuid4().hex.encode(), b'{"hello": "broker"}'
    producer = make_producer(config)
    delivered = []
    producer.produce(config.kafka_topic, key=key, value=value,
                     on_delivery=lambda err, msg: delivered.append(err))
    assert producer.flush(WAIT_S) == 0 and delivered == [None]

    consumer = make_consumer(config, group_id="test-roundtrip-" + uuid.uuid4().hex)
    consumer.subscribe([config.kafka_topic])
    try:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and not message.error() and message.key() == key:
                assert message.value() == value
                return
        pytest.fail("the produced message never arrived")
    finally:
        consumer.close()


def _start_redis(port: int, workdir: str) -> subprocess.Popen:
    server = subprocess.Popen([shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(port),
                               "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server
        except OSError:
            time.sleep(0.05)
    server.kill()
    pytest.fail("redis-server did not start")


def test_readyz_follows_redis_down_and_back(database, config, kafka_topics):
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        server = _start_redis(port, workdir)
        app = create_app(config.replace(redis_url=f"redis://127.0.0.1:{port}/0", redis_cluster_nodes=""))
        client = app.test_client()
        try:
            ready = client.get("/readyz")
            assert ready.status_code == 200, ready.get_json()
            assert ready.get_json()["components"] == {"postgres": "up", "redis": "up", "kafka": "up"}

            server.terminate()
            server.wait(10)
            down = client.get("/readyz")
            assert down.status_code == 503
            assert down.get_json()["components"]["redis"] == "down"
            assert down.get_json()["components"]["postgres"] == "up"
            assert "redis" in down.get_json()["error"]["message"]
            assert client.get("/healthz").status_code == 200

            server = _start_redis(port, workdir)
            assert client.get("/readyz").status_code == 200
        finally:
            server.kill()
            server.wait(10)


def test_compose_file_is_valid():
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose (Debian package) is needed to validate docker-compose.yml"
    env = {**os.environ, "SECRET_KEY": "a-long-random-value-for-the-compose-check"}
    result = subprocess.run([compose, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    services = subprocess.run([compose, "-f", str(ROOT / "docker-compose.yml"), "config", "--services"],
                              capture_output=True, text=True, cwd=ROOT, timeout=60, env=env).stdout.split()
    unset = subprocess.run([compose, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                           capture_output=True, text=True, cwd=ROOT, timeout=60,
                           env={k: v for k, v in env.items() if k != "SECRET_KEY"})
    assert unset.returncode != 0 and "SECRET_KEY" in unset.stderr, \
        "the stack must not start with a default key"
    assert {"postgres", "redis", "kafka", "migrate", "web", "relay", "worker"} <= set(services)


def test_compose_monitoring_profile_runs_prometheus_grafana_and_jaeger_on_files_that_exist():
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose (Debian package) is needed to validate docker-compose.yml"
    env = {**os.environ, "SECRET_KEY": "a-long-random-value-for-the-compose-check"}
    result = subprocess.run([compose, "-f", str(ROOT / "docker-compose.yml"), "--profile", "monitoring",
                             "config"], capture_output=True, text=True, cwd=ROOT, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert {"prometheus", "grafana", "jaeger"} <= set(services)
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:  # docker-compose 1.x prints them short: source:target:mode
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if source.startswith("/"):
                assert Path(source).exists(), (name, source)
    assert services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert services["web"]["environment"]["PROMETHEUS_URL"] == "http://prometheus:9090"


def test_topics_have_the_configured_partition_count(kafka_topics):
    config = kafka_topics
    metadata = make_consumer(config, group_id="probe").list_topics(config.kafka_topic, timeout=WAIT_S)
    assert len(metadata.topics[config.kafka_topic].partitions) == config.kafka_partitions


def test_the_models_and_the_migrations_agree(database):
    """`alembic check`: autogenerate finds nothing to add, so the models (app/*/models.py) and
    migrations/ cannot drift."""
    command.check(alembic_config(database))
