"""The cluster's fault tests (`make test-cluster`, after the integration and end-to-end suites).

The tests' own processes (the session's `live_stack`: two webs behind their balancer, two relays, two
workers, two ingesters, on this run's database, keys and topics) run on the engines of the cluster that
`make up-cluster` started. A test kills one thing with SIGKILL, a crash: one of the stack's processes
(started again as the fixture started it), or a Kafka broker or a Redis master of the cluster, found
through the cluster's supervisor and started again by `python -m scripts.stack cluster up`, which starts
what is not running and waits until the cluster is whole. So each test leaves the cluster as it found it.
"""
from __future__ import annotations

from contextlib import contextmanager

import pytest
from alembic import command

from app.core.db import get_engine
from app.core.kafka import ensure_topics
from tests.cluster.engines import ClusterEngines, from_environment
from tests.cluster.failover import REPORT
from tests.conftest import alembic_config, drop_replication_slots, recreate_database
from tests.helpers import CLUSTER, beside
from tests.live_stack import run_live_stack

if not CLUSTER:
    pytest.fail("tests/cluster runs on the clustered topology only: `make up-cluster && make test-cluster`",
                pytrace=False)


@pytest.fixture(scope="session")
def engines() -> ClusterEngines:
    return from_environment()


@pytest.fixture()
def stack(live_stack):
    """The live stack, every process of it running again after the test (whatever the test killed)."""
    yield live_stack
    for name, process in list(live_stack.processes.items()):
        if process.poll() is not None and name != "lb":
            live_stack.restart(name)


@pytest.fixture()
def beside_stack(kafka_topics):
    """A second live stack on the cluster with our relay in its other mode (poll; wal when the run's is
    poll), on a database, topics and consumer groups of its own: a PostgreSQL failover goes through both
    relay modes at once. Yields it and its database's engine."""
    mode = "wal" if kafka_topics.relay_mode == "poll" else "poll"
    config = beside(kafka_topics, mode, relay_mode=mode)
    recreate_database(config.database_url)
    command.upgrade(alembic_config(config.database_url), "head")
    ensure_topics(config)
    engine = get_engine(config.database_url)
    try:
        with contextmanager(run_live_stack)(config) as stack:
            yield stack, engine
    finally:
        engine.dispose()
        drop_replication_slots(config.database_url)  # wal mode's: it would keep the cluster's WAL


def pytest_terminal_summary(terminalreporter) -> None:
    """The PostgreSQL failovers' figures (tests/cluster/failover.py), whatever pytest captured."""
    if REPORT:
        terminalreporter.section("PostgreSQL failovers")
        for line in REPORT:
            terminalreporter.write_line(line)
