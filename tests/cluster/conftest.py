"""The cluster's fault tests (`make test-cluster`, after the integration and end-to-end suites).

The tests' own processes (the session's `live_stack`: two webs behind their balancer, two relays, two
workers, two ingesters, on this run's database, keys and topics) run on the engines of the cluster that
`make up-cluster` started. A test kills one thing with SIGKILL, a crash: one of the stack's processes
(started again as the fixture started it), or a Kafka broker or a Redis master of the cluster, found
by scripts/cluster.sh's pid files and started again by `scripts/cluster.sh up`, which starts what is
not running and waits until the cluster is whole. So each test leaves the cluster as it found it.
"""
from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis as redis_lib

from tests.e2e.conftest import ROOT
from tests.helpers import CLUSTER, WAIT_S

if not CLUSTER:
    pytest.fail("tests/cluster runs on the clustered topology only: `make up-cluster && make test-cluster`",
                pytrace=False)

# `scripts/cluster.sh up` after a kill: a Kafka node's start and the Redis Cluster's wait included.
RESTORE_S = 300


@dataclass(frozen=True)
class ClusterEngines:
    """The Kafka nodes and Redis nodes of scripts/cluster.sh (its CLUSTER_* settings, exported by
    `scripts/cluster.sh test`)."""
    run_dir: Path
    kafka_port: int
    redis_port: int

    def pid(self, name: str) -> int:
        return int((self.run_dir / f"{name}.pid").read_text().strip())

    def crash(self, name: str) -> None:
        """SIGKILL `name` (e.g. `kafka-2`, `redis-4`): spawned with setsid, it leads its process group."""
        os.killpg(self.pid(name), signal.SIGKILL)

    def restore(self) -> None:
        """`scripts/cluster.sh up`: starts what is not running and waits until the cluster is whole. With
        the cluster's own environment: this run's key prefix and test settings are the tests' only."""
        env = {k: v for k, v in os.environ.items() if k != "REDIS_KEY_PREFIX" and not k.startswith("TEST_")}
        done = subprocess.run([str(ROOT / "scripts" / "cluster.sh"), "up"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=RESTORE_S, check=False)
        assert done.returncode == 0, done.stdout + done.stderr

    def kafka_node(self, broker_id: int) -> str:
        return f"kafka-{broker_id}"  # node.id N is kafka-N (scripts/cluster.sh)

    def redis_node(self, address: str) -> str:
        """`127.0.0.1:17001` -> `redis-2`."""
        return f"redis-{int(address.rpartition(':')[2]) - self.redis_port + 1}"

    def redis(self, name: str) -> redis_lib.Redis:
        """A plain client of one node (for CLUSTER INFO and ROLE)."""
        port = self.redis_port + int(name.rpartition("-")[2]) - 1
        return redis_lib.Redis(host="127.0.0.1", port=port, socket_timeout=5, socket_connect_timeout=2)


@pytest.fixture(scope="session")
def engines() -> ClusterEngines:
    return ClusterEngines(Path(os.environ["CLUSTER_RUN_DIR"]), int(os.environ["CLUSTER_KAFKA_PORT"]),
                          int(os.environ["CLUSTER_REDIS_PORT"]))


@pytest.fixture()
def stack(live_stack):
    """The live stack, every process of it running again after the test (whatever the test killed)."""
    yield live_stack
    for name, process in list(live_stack.processes.items()):
        if process.poll() is not None and name != "lb":
            live_stack.restart(name)


__all__ = ["ClusterEngines", "RESTORE_S", "WAIT_S"]
