"""CHAOS_TARGET=cluster (`make chaos-cluster`, i.e. `scripts/cluster.sh chaos`): the same run on the
clustered topology that `make up-cluster` started.

The run's processes are two of each, as the cluster runs them (tests/e2e/conftest.py starts them the
same way): `web-1` and `web-2` behind an HAProxy of the run's own, two relays (one leads) and two
workers, on the run's own database, topics (replicated as the brokers replicate: 3 times, min ISR 2)
and Redis key prefix. The stores are the cluster's: a `kafka` fault SIGKILLs one of its three brokers,
a `redis` fault one of its Redis masters (its replica takes over); `scripts/cluster.sh up` starts the
node again (tests/cluster/conftest.py's ClusterEngines). A process fault kills one instance of two.
Redis's data is never deleted on the cluster (no `redis_wipe`): the cluster is shared by the run with
nobody, but its nodes' files are the cluster's.
"""
from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

from app.config import Config
from tests.chaos.apps import ChaosApps
from tests.cluster.engines import ClusterEngines
from tests.e2e.conftest import _start_balancer, names_of, _wait_http, start_process, upstream_of
from tests.helpers import stop_process
from tests.helpers import free_port, stack_env, wait_until

KINDS = ("web", "relay", "worker")
NAMES = names_of(cluster=True)


def cluster_target() -> bool:
    return os.environ.get("CHAOS_TARGET", "single") == "cluster"


class ClusterStack:
    """BenchStack's interface (processes, start, stop, base_url) for two of each process behind a balancer."""

    def __init__(self, config: Config, logs: Path):
        self.config, self.logs = config, logs
        self.processes: dict[str, subprocess.Popen] = {}
        self.web_ports = {name: free_port() for name in NAMES["web"]}
        self.port = free_port()
        self.balancer: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, name: str) -> subprocess.Popen:
        extra = {"WEB_TRUSTED_PROXIES": "1"}
        if name in self.web_ports:
            metrics_dir = self.logs / f"prometheus-{name}"
            metrics_dir.mkdir(exist_ok=True)
            extra.update(WEB_PORT=str(self.web_ports[name]), WEB_WORKERS="2", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
        process = self.processes[name] = start_process(name, stack_env(self.config, **extra), self.logs)
        if name in self.web_ports:
            _wait_http(f"http://127.0.0.1:{self.web_ports[name]}/healthz", process)
        return process

    def start_balancer(self) -> None:
        self.balancer = _start_balancer(self.port, self.web_ports, self.logs, self.config)
        seen: set[str | None] = set()
        wait_until(lambda: seen.add(upstream_of(f"{self.base_url}/healthz")) or set(self.web_ports) <= seen,
                   "the run's balancer did not reach both webs", every_s=0.2)

    def stop_balancer(self) -> None:
        if self.balancer is not None:
            stop_process(self.balancer)


class ClusterApps(ChaosApps):
    """ChaosApps over two of each process: a fault of a kind picks one instance of it."""

    def __init__(self, config: Config, logs: Path, rng: random.Random):
        logs.mkdir(parents=True, exist_ok=True)
        self.stack = ClusterStack(config, logs)
        self.groups = set()
        self.rng = rng

    def names(self, kind: str | None = None) -> list[str]:
        return [name for k in KINDS if kind in (None, k) for name in NAMES[k]]

    def start(self, name: str) -> None:
        if name in KINDS:  # a kind: one instance of it that is not running
            name = next(n for n in NAMES[name] if self.exit_code(n) is not None or n not in self.stack.processes)
        self.groups.add(self.stack.start(name).pid)

    def kill(self, name: str) -> None:
        super().kill(self.rng.choice(NAMES[name]) if name in KINDS else name)

    def pid(self, name: str) -> int:
        if name == "web":  # the gunicorn master of the first web that runs (the same one each call)
            name = next(n for n in NAMES["web"] if n in self.stack.processes and self.exit_code(n) is None)
        return self.stack.processes[name].pid

    def stop_all(self) -> None:
        self.stack.stop_balancer()
        super().stop_all()


class ClusterStore:
    """A `kafka` or `redis` fault on the cluster's nodes: PrivateRedis's and ChaosKafka's interface."""

    def __init__(self, engines: ClusterEngines, kind: str, rng: random.Random):
        self.engines, self.kind, self.rng = engines, kind, rng
        self.killed: str | None = None

    def kill(self) -> None:
        if self.kind == "kafka":
            self.killed = self.rng.choice(["kafka-1", "kafka-2", "kafka-3"])
        else:
            self.killed = self.rng.choice(self.engines.redis_masters())
        self.engines.crash(self.killed)

    def start(self) -> None:
        self.engines.restore()
        self.killed = None

    def exit_code(self) -> int | None:
        """-9 while a node of this kind is down without the run having killed it, else None."""
        names = ["kafka-1", "kafka-2", "kafka-3"] if self.kind == "kafka" else [f"redis-{i}" for i in range(1, 7)]
        return -9 if any(not self.engines.running(name) for name in names if name != self.killed) else None

    def wipe(self) -> None:
        raise RuntimeError("the cluster's Redis files are never deleted")


__all__ = ["ClusterApps", "ClusterStore", "cluster_target"]
