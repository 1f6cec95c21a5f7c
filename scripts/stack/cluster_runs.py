"""What runs on the cluster's engines with processes of its own: `make test-cluster`, `make bench-cluster`
and `make chaos-cluster` (`python -m scripts.stack cluster test | bench | chaos`)."""

from __future__ import annotations

import os
import subprocess
import sys

from scripts.stack.cluster import CLUSTER_DIR, COMPONENTS, Cluster
from scripts.stack.programs import StackError
from scripts.stack.supervisor import ROOT

# Debezium's fault tests: Kafka Connect relays (RELAY_MODE=debezium), the run's two distributed workers; a
# worker killed, and the PostgreSQL leader killed.
CONNECT_FAILOVER = ("tests/cluster/test_connect_failover.py", "tests/cluster/test_debezium_failover.py")


def test_environment(cluster: Cluster) -> dict[str, str]:
    """The suites on the cluster's engines (TEST_CLUSTER=1; tests/helpers.py). The end-to-end fixtures
    start two of each process themselves (and of Kafka Connect's workers under RELAY_MODE=debezium); the
    fault tests find the cluster's nodes by CLUSTER_RUN_DIR."""
    missing = [name for name in COMPONENTS if name not in cluster.running()]
    if missing:
        raise StackError(f"not running: {' '.join(missing)} (start the cluster: make up-cluster)")
    return tests_environ(cluster)


def tests_environ(cluster: Cluster) -> dict[str, str]:
    """test_environment's variables: the cluster's engines, without what the cluster's own webs are
    given (their balancer to trust, its address as the public one, the dashboard's password): the
    tests', the chaos run's and the benchmark's processes have their own, or the defaults."""
    env = cluster.environ()
    for name in ("WEB_TRUSTED_PROXIES", "PUBLIC_URL", "OPS_PASSWORD"):
        env.pop(name, None)
    env.update(
        CLUSTER_RUN_DIR=str(CLUSTER_DIR),
        CLUSTER_WEB_PORT=str(cluster.web_port),
        CLUSTER_KAFKA_PORT=str(cluster.kafka_port),
        CLUSTER_REDIS_PORT=str(cluster.redis_port),
        CLUSTER_PG_PORT=str(cluster.layout.pg_port),
        CLUSTER_ETCD_PORT=str(cluster.layout.etcd_port),
        CLUSTER_METRICS_PORT=str(cluster.metrics_port),
        CLUSTER_CONNECT_PORT=str(cluster.connect_port),
        CLUSTER_DATABASE=cluster.database,
    )
    return env


def test(cluster: Cluster, args: list[str]) -> None:
    """The suites on the cluster (or `args`), in the relay mode of the environment (wal by default; the
    leader's crash also takes a stack in poll mode beside it: tests/cluster/test_postgres_failover.py);
    with no `args`, then the Connect worker's crash and the leader's with Debezium relaying (a stack and
    database of their own)."""
    env = {**test_environment(cluster), "TEST_CLUSTER": "1"}
    env.setdefault("TEST_DATABASE", "quiz_test_cluster")
    os.chdir(ROOT)
    pytest = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
    if args:
        os.execve(sys.executable, pytest + args, env)
    suites = ["tests/integration", "tests/e2e", "tests/cluster"] + [f"--ignore={t}" for t in CONNECT_FAILOVER]
    failed = subprocess.run(pytest + suites, env=env, check=False).returncode
    own = {**env, "RELAY_MODE": "debezium", "TEST_DATABASE": f"{env['TEST_DATABASE']}_debezium"}
    failed |= subprocess.run(pytest + list(CONNECT_FAILOVER), env=own, check=False).returncode
    sys.exit(1 if failed else 0)


def bench(cluster: Cluster) -> None:
    """The writes' benchmark with and without synchronous_mode (tests/bench/cluster_writes.py), with its
    own processes on the cluster's engines."""
    os.chdir(ROOT)
    os.execve(sys.executable, [sys.executable, "-m", "tests.bench.cluster_writes"], test_environment(cluster))


def chaos(cluster: Cluster) -> None:
    """The chaos run (tests/chaos/cluster.py) with its own processes on the cluster's engines."""
    os.chdir(ROOT)
    os.execve(sys.executable, [sys.executable, "-m", "tests.chaos"],
              {**test_environment(cluster), "CHAOS_TARGET": "cluster"})
