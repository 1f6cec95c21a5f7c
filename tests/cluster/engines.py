"""The engines of the cluster that scripts/cluster.sh runs: its Kafka nodes and Redis nodes, found by their
pid files, crashed by SIGKILL and started again by `scripts/cluster.sh up`. Used by the fault tests
(tests/cluster) and the chaos run on the cluster (tests/chaos/cluster.py)."""
from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import redis as redis_lib

ROOT = Path(__file__).resolve().parents[2]

# `scripts/cluster.sh up` after a kill: a Kafka node's start and the Redis Cluster's wait included.
RESTORE_S = 300


@dataclass(frozen=True)
class ClusterEngines:
    """The Kafka nodes and Redis nodes of scripts/cluster.sh (its CLUSTER_* settings, exported by
    `scripts/cluster.sh test` and `scripts/cluster.sh chaos`)."""
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
        """A plain client of one node (for CLUSTER INFO, SLOTS and NODES)."""
        port = self.redis_port + int(name.rpartition("-")[2]) - 1
        return redis_lib.Redis(host="127.0.0.1", port=port, socket_timeout=5, socket_connect_timeout=2)

    def running(self, name: str) -> bool:
        try:
            os.kill(self.pid(name), 0)
        except (OSError, ValueError):
            return False
        return True

    def redis_masters(self) -> list[str]:
        """The Redis nodes that are masters now, as a running node sees the cluster."""
        for i in range(1, 7):
            if self.running(f"redis-{i}"):
                nodes = self.redis(f"redis-{i}").execute_command("CLUSTER NODES")  # {address: fields}
                return [self.redis_node(address.split("@")[0]) for address, node in nodes.items()
                        if "master" in node["flags"] and "fail" not in node["flags"]]
        raise RuntimeError("no Redis node of the cluster is running")


def from_environment() -> ClusterEngines:
    """The engines named by what `scripts/cluster.sh test` and `scripts/cluster.sh chaos` export."""
    return ClusterEngines(Path(os.environ["CLUSTER_RUN_DIR"]), int(os.environ["CLUSTER_KAFKA_PORT"]),
                          int(os.environ["CLUSTER_REDIS_PORT"]))
