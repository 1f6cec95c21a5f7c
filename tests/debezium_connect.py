"""Kafka Connect with Debezium's outbox connector for tests (RELAY_MODE=debezium): one standalone worker
per test session, started the way `make up` starts it (scripts/stack/connect.py) under a supervisor of its
own, on a free port, against the shared Kafka and this run's database. A test points the connector at its
own topics (`start`) and removes it when done (`stop`); the connector's slot (one per database) is
dropped with the test database's other slots at the end of the run.
"""
from __future__ import annotations

import tempfile
import urllib.error
from pathlib import Path

from sqlalchemy import text

from app.core.config import Config
from app.core.outbox import engine_slot_name
from outbox_relay import debezium
from scripts.stack.connect import apply_outbox_connector, connect_program
from scripts.stack.programs import AppStack
from scripts.stack.supervisor import MANUAL
from tests.helpers import free_port, stack_env, wait_until

NAME = "connect"


class DebeziumConnect:
    def __init__(self, config: Config):
        self.run_dir = Path(tempfile.mkdtemp(prefix="livequiz-connect-"))
        self.config = config.replace(connect_port=free_port(), connect_metrics_port=free_port())
        self.stack = AppStack(self.run_dir, stack_env(self.config), MANUAL)
        self.start_worker()

    def start_worker(self, connector_of: Config | None = None) -> None:
        """Start the worker; with `connector_of`, running the outbox connector of that configuration from
        the start, as the stack's does (its connector file)."""
        connector = None
        if connector_of is not None:
            from cache_worker.process import aggregate_types

            connector = debezium.connector_config(connector_of, aggregate_types(), snapshot_mode="no_data",
                                                  topic_prefix=f"{connector_of.kafka_topic}.debezium")
        self.stack.supervisor.define(connect_program(NAME, self.run_dir, MANUAL, self.config, connector))
        self.stack.supervisor.start(NAME)

    def kill_worker(self) -> int:
        """SIGKILL the Connect worker: no offset commit, no slot confirmation runs."""
        return self.stack.kill(NAME)

    def start(self, config: Config, engine, *, from_now: bool = True,
              snapshot_mode: str = "no_data") -> Config:
        """The connector relaying this database's outbox to `config`'s topics, running; with `from_now` its
        slot first skips to the present (what earlier tests wrote is not published again). Returns
        `config` with this worker's port. `snapshot_mode` when_needed is the stack's."""
        own = config.replace(connect_port=self.config.connect_port)
        if from_now:
            skip_slot_to_now(engine)
        apply_outbox_connector(self.stack.supervisor, NAME, own, snapshot_mode=snapshot_mode,
                               topic_prefix=f"{own.kafka_topic}.debezium")
        return own

    def stop(self, config: Config, engine) -> None:
        """Remove the connector, and wait until its slot is released."""
        try:
            debezium._rest(config.replace(connect_port=self.config.connect_port), "DELETE",
                           f"/connectors/{debezium.connector_name(config)}")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
        wait_until(lambda: not slot_active(engine), "Debezium's slot stayed in use after its connector went")

    def log(self) -> str:
        return (self.run_dir / f"{NAME}.log").read_text(errors="replace")

    def close(self) -> None:
        self.stack.close()


def slot_active(engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(text("SELECT active FROM pg_replication_slots WHERE slot_name = :s"),
                                 {"s": engine_slot_name(engine, "debezium")}).scalar())


def skip_slot_to_now(engine) -> None:
    """Advance Debezium's slot (if it exists and no connector reads it) to the WAL's present."""
    slot = engine_slot_name(engine, "debezium")
    wait_until(lambda: not slot_active(engine), "Debezium's slot stayed in use")
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_replication_slot_advance(slot_name, pg_current_wal_flush_lsn()) "
                          "FROM pg_replication_slots WHERE slot_name = :s"), {"s": slot})
