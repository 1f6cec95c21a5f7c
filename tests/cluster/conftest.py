"""The cluster's fault tests (`make test-cluster`, after the integration and end-to-end suites).

The tests' own processes (the session's `live_stack`: two webs behind their balancer, two relays, two
workers, two ingesters, on this run's database, keys and topics) run on the engines of the cluster that
`make up-cluster` started. A test kills one thing with SIGKILL, a crash: one of the stack's processes
(started again as the fixture started it), or a Kafka broker or a Redis master of the cluster, found
through the cluster's supervisor and started again by `python -m scripts.stack cluster up`, which starts
what is not running and waits until the cluster is whole. So each test leaves the cluster as it found it.
"""
from __future__ import annotations

import pytest

from tests.cluster.engines import ClusterEngines, from_environment
from tests.cluster.failover import REPORT
from tests.helpers import CLUSTER

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



def pytest_terminal_summary(terminalreporter) -> None:
    """The PostgreSQL failovers' figures (tests/cluster/failover.py), whatever pytest captured."""
    if REPORT:
        terminalreporter.section("PostgreSQL failovers")
        for line in REPORT:
            terminalreporter.write_line(line)
