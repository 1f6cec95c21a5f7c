"""The engines of the cluster that `make up-cluster` runs (scripts/stack/cluster.py): its Kafka nodes,
Redis nodes and PostgreSQL nodes under Patroni, found through the cluster's supervisor (their Policy
MANUAL: a crashed node stays down), crashed by SIGKILL and started again by `python -m scripts.stack
cluster up`. Used by the fault tests (tests/cluster) and the chaos run on the cluster
(tests/chaos/cluster.py)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import redis as redis_lib

from scripts.stack.engines import KAFKA_START_S
from scripts.stack.patroni import PG_NODES, node_host
from scripts.stack.postgres import pg_bindir
from scripts.stack.supervisor import Supervisor
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]

# `python -m scripts.stack cluster up` after a kill: a Kafka node's start (its own bound) and the Redis
# Cluster's and Patroni's waits after it.
RESTORE_S = KAFKA_START_S + 300


# The tests' settings, not the cluster's: this run's key prefix, its TEST_* and its relay mode (the
# Debezium tests run with RELAY_MODE=debezium, under which `cluster up` would also start Kafka Connect
# workers of the cluster's own, and their connector's slot on the cluster's database, that the cluster
# was not started with).
_TESTS_OWN = ("REDIS_KEY_PREFIX", "RELAY_MODE")


def cluster_environ(environ) -> dict[str, str]:
    """`environ` without the tests' own settings: what `cluster up` runs with when a test restores the
    cluster."""
    return {k: v for k, v in environ.items() if k not in _TESTS_OWN and not k.startswith("TEST_")}


@dataclass(frozen=True)
class ClusterEngines:
    """The Kafka nodes and Redis nodes of the cluster (its CLUSTER_* settings, exported by `make
    test-cluster` and `make chaos-cluster`)."""
    run_dir: Path
    kafka_port: int
    redis_port: int
    pg_port: int

    @property
    def supervisor(self) -> Supervisor:
        return Supervisor(self.run_dir)

    def pid(self, name: str) -> int:
        return self.supervisor.pid(name)

    def crash(self, name: str) -> None:
        """SIGKILL `name` (e.g. `kafka-2`, `redis-4`): the supervisor made it a process group's leader."""
        self.supervisor.kill(name, group=True)

    def restore(self) -> None:
        """`python -m scripts.stack cluster up`: starts what is not running and waits until the cluster is
        whole, in the cluster's own environment (`cluster_environ`)."""
        done = subprocess.run([sys.executable, "-m", "scripts.stack", "cluster", "up"], cwd=ROOT,
                              env=cluster_environ(os.environ), capture_output=True, text=True,
                              timeout=RESTORE_S, check=False)
        assert done.returncode == 0, done.stdout + done.stderr

    def kafka_node(self, broker_id: int) -> str:
        return f"kafka-{broker_id}"  # node.id N is kafka-N (scripts/stack/cluster.py)

    def redis_node(self, address: str) -> str:
        """`127.0.0.1:17001` -> `redis-2`."""
        return f"redis-{int(address.rpartition(':')[2]) - self.redis_port + 1}"

    def redis(self, name: str) -> redis_lib.Redis:
        """A plain client of one node (for CLUSTER INFO, SLOTS and NODES)."""
        port = self.redis_port + int(name.rpartition("-")[2]) - 1
        return redis_lib.Redis(host="127.0.0.1", port=port, socket_timeout=5, socket_connect_timeout=2)

    def running(self, name: str) -> bool:
        return self.pid(name) != 0

    def redis_masters(self) -> list[str]:
        """The Redis nodes that are masters now, as a running node sees the cluster."""
        for i in range(1, 7):
            if self.running(f"redis-{i}"):
                nodes = self.redis(f"redis-{i}").execute_command("CLUSTER NODES")  # {address: fields}
                return [self.redis_node(address.split("@")[0]) for address, node in nodes.items()
                        if "master" in node["flags"] and "fail" not in node["flags"]]
        raise RuntimeError("no Redis node of the cluster is running")


    def postgres_members(self) -> dict[str, dict]:
        """Patroni's members (name -> its /cluster entry: role, state, timeline) as the first node that
        answers sees them; {} when none answers."""
        for name in PG_NODES:
            # Its REST API: the port after its PostgreSQL's.
            url = f"http://{node_host(name)}:{self.postgres_port(name) + 1}/cluster"
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    return {m["name"]: m for m in json.load(response).get("members", [])}
            except (OSError, ValueError):
                continue
        return {}

    def postgres_port(self, name: str) -> int:
        """Node pg-N's PostgreSQL port: PG_PORT + 2N - 1 (scripts/stack/patroni.py Layout)."""
        return self.pg_port + 2 * int(name.rpartition("-")[2]) - 1

    def postgres_leader(self) -> str | None:
        """The running leader Patroni names (pg-N), None while there is none."""
        return next((name for name, m in self.postgres_members().items()
                     if m["role"] == "leader" and m["state"] == "running"), None)

    def patronictl(self, *args: str) -> str:
        """`patronictl` on the cluster, through etcd's loopback addresses (not a node's: a node may be cut
        off); its output, or AssertionError with it."""
        config = self.run_dir / "patronictl.yml"  # scripts/stack/patroni.py's ctl_config
        done = subprocess.run(["patronictl", "-c", str(config), *args], capture_output=True, text=True,
                              timeout=RESTORE_S, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def switchover(self, leader: str, candidate: str) -> None:
        """`patronictl switchover --force`: `leader` hands over to `candidate` (Patroni waits until the
        candidate has replayed everything, shuts the leader down cleanly, promotes the candidate)."""
        self.patronictl("switchover", "--leader", leader, "--candidate", candidate, "--force")

    def log_of(self, name: str) -> str:
        return (self.run_dir / f"{name}.log").read_text(errors="replace")

    def in_recovery(self, name: str) -> bool:
        """Whether node `name`'s PostgreSQL runs as a standby, asked over its own socket (which no cut of
        its address reaches), as the OS user that runs it."""
        sql = [str(pg_bindir() / "psql"), "-X", "-At", "-h", str(self.run_dir / name / "sock"),
               "-p", str(self.postgres_port(name)), "-U", "postgres", "-d", "postgres",
               "-c", "SELECT pg_is_in_recovery()"]
        command = ["runuser", "-u", "postgres", "--", *sql] if os.geteuid() == 0 else sql
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        return done.returncode == 0 and done.stdout.strip() == "t"

    def wait_replica(self, name: str, timeline: int) -> None:
        """Until node `name` runs as a replica on the leader's `timeline` (it rejoined the cluster)."""
        def replica() -> bool:
            member = self.postgres_members().get(name, {})
            return (member.get("role") in ("replica", "sync_standby") and member.get("state") == "running"
                    and member.get("timeline") == timeline)

        wait_until(replica, f"{name} did not rejoin as a replica on timeline {timeline}", timeout_s=RESTORE_S)

    def crash_postgres(self, name: str) -> None:
        """SIGKILL node `name`'s Patroni and its PostgreSQL together (the postmaster runs in a session of
        its own; killed alone, Patroni would restart it in place). Its backends exit on their
        postmaster's death."""
        postmaster = int((self.run_dir / name / "data" / "postmaster.pid").read_text().split()[0])
        self.supervisor.kill(name, group=True)
        os.kill(postmaster, signal.SIGKILL)


def from_environment() -> ClusterEngines:
    """The engines named by what `make test-cluster` and `make chaos-cluster` export
    (scripts/stack/cluster.py)."""
    return ClusterEngines(Path(os.environ["CLUSTER_RUN_DIR"]), int(os.environ["CLUSTER_KAFKA_PORT"]),
                          int(os.environ["CLUSTER_REDIS_PORT"]), int(os.environ["CLUSTER_PG_PORT"]))


class Restoring:
    """`ClusterEngines.restore` on a thread of its own (`start`): what a test crashed starts again while the
    test audits the rest; `wait` for it before the test ends (the next fault needs the cluster whole, and
    no other `cluster up` beside this one)."""

    def __init__(self, engines: ClusterEngines) -> None:
        self.engines, self.error = engines, None
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        try:
            self.engines.restore()
        except BaseException as exc:  # noqa: BLE001 - raised again by `wait`
            self.error = exc

    def start(self) -> Restoring:
        self.thread.start()
        return self

    def wait(self) -> None:
        if self.thread.ident is not None:  # started
            self.thread.join(RESTORE_S)
            assert not self.thread.is_alive(), f"the cluster was not whole again within {RESTORE_S} s"
        if self.error is not None:
            raise self.error
