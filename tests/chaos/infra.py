"""The stores of a chaos run: its database, and a Redis and a Kafka broker nobody else uses.

The run kills and wipes Redis and kills Kafka, so both are private processes on free loopback ports
with their data in the run's temporary directory; the shared ones of `make up` are never touched.
Kafka is the single-node KRaft broker of the relay's outage test (PrivateKafka, same cached jars).
PostgreSQL is the shared server, with a database of the run's own, dropped and migrated at start;
its faults cut the services' connections to that database, never the server.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis as redis_lib
from alembic import command
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from app.core.outbox import drop_slots_of_database
from tests.conftest import alembic_config, recreate_database
from tests.helpers import free_port, wait_until
from tests.kafka_broker import PrivateKafka

__all__ = ["ChaosKafka", "PrivateRedis", "audit_engine", "fresh_database", "release_slots",
           "terminate_backends"]

# The run's own connections, which terminate_backends spares.
AUDIT_APPLICATION = "livequiz-chaos-audit"


def fresh_database(database_url: str) -> None:
    """Drop and create the run's database, then `alembic upgrade head` (as tests/bench does)."""
    recreate_database(database_url)
    command.upgrade(alembic_config(database_url), "head")


def release_slots(database_url: str) -> list[str]:
    """Drop the replication slots of the run's database once its relays have stopped: an unread slot
    retains WAL for ever (the database itself stays, to be looked at, until the next run's start)."""
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as db:
            return drop_slots_of_database(db, admin.url.database)
    finally:
        admin.dispose()


def audit_engine(database_url: str) -> Engine:
    """The run's own connections to its database (pinged before use: a fault may have cut them)."""
    return create_engine(database_url, pool_size=2, pool_pre_ping=True,
                         connect_args={"application_name": AUDIT_APPLICATION})


def terminate_backends(database_url: str) -> int:
    """Cut every connection of the services to the run's database; the shared server stays up.

    A role may terminate its own role's sessions, so no superuser is needed."""
    url = make_url(database_url)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as db:
            # Client connections of our own role only: autovacuum workers belong to the superuser.
            return db.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = :db AND backend_type = 'client backend' AND usename = current_user "
                "AND application_name <> :spared AND pid <> pg_backend_pid()"),
                {"db": url.database, "spared": AUDIT_APPLICATION}).scalar()
    finally:
        admin.dispose()


@contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Send this process's file descriptor 2 to `path` for a while (librdkafka writes there directly)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("ab") as sink:
        os.dup2(sink.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


class ChaosKafka(PrivateKafka):
    """PrivateKafka whose readiness probe's "connection refused" lines go to the broker's log, not the
    terminal (for the seconds a start takes, anything this process writes to stderr goes there too)."""

    def exit_code(self) -> int | None:
        return self.proc.poll()

    def start(self) -> None:
        with stderr_to(self.log):
            super().start()


class PrivateRedis:
    """redis-server with the stack's persistence (AOF every second, RDB snapshots) in `workdir`."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.data = workdir / "data"
        self.conf = workdir / "redis.conf"
        self.log = workdir / "redis.log"
        self.data.mkdir(parents=True, exist_ok=True)
        # The same persistence as `make up`'s Redis (scripts/stack/engines.py): what a restart keeps is what
        # production keeps.
        self.conf.write_text(f"""bind 127.0.0.1
protected-mode yes
port {self.port}
daemonize no
dir {self.data}
appendonly yes
appendfsync everysec
save 3600 1 300 100 60 10000
loglevel notice
""")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(["redis-server", str(self.conf)], stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        client = redis_lib.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=5)

        def answers() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode} (see {self.log})")
            try:
                return bool(client.ping())
            except redis_lib.RedisError:  # refused, or LOADING its AOF
                return False

        wait_until(answers, f"the private Redis on port {self.port} did not answer (see {self.log})",
                   every_s=0.1)
        client.close()

    def exit_code(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        """SIGKILL: a crash. What it wrote is in the page cache, so the AOF keeps it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def wipe(self) -> None:
        """Delete every file Redis persisted (it must be stopped): it starts again empty."""
        shutil.rmtree(self.data)
        self.data.mkdir()
