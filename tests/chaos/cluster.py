"""CHAOS_TARGET=cluster (`make chaos-cluster`): the same run on the clustered topology that `make
up-cluster` started.

The run's processes are two of each, as the cluster runs them (tests/live_stack.py starts them the
same way; here under a supervisor that restarts them, Policy APP): `web-1` and `web-2` behind an
HAProxy of the run's own, two relays (one leads) and two workers, on the run's own database, topics
(replicated as the brokers replicate: 3 times, min ISR 2) and Redis key prefix. The stores are the
cluster's: a `kafka` fault SIGKILLs one of its three brokers, a `redis` fault one of its Redis masters
(its replica takes over); `python -m scripts.stack cluster up` starts the node again
(tests/cluster/engines.py's ClusterEngines). A process fault kills one instance of two. Redis's data
is never deleted on the cluster (no `redis_wipe`): the cluster is shared by the run with nobody, but
its nodes' files are the cluster's.
"""
from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path

from app.core.config import Config
from scripts.stack.programs import AppStack
from scripts.stack.supervisor import APP
from tests.chaos.apps import ChaosApps
from tests.cluster.engines import ClusterEngines
from tests.helpers import free_port, stack_env
from tests.live_stack import names_of, reaches_both, start_balancer

KINDS = ("web", "relay", "worker")
NAMES = names_of(cluster=True)


def cluster_target() -> bool:
    return os.environ.get("CHAOS_TARGET", "single") == "cluster"


class ClusterStack:
    """BenchStack's interface (apps, start, stop_all, base_url) for two of each process behind a balancer,
    under a supervisor that restarts them (Policy APP)."""

    def __init__(self, config: Config, logs: Path):
        self.config, self.logs = config, logs
        self.web_ports = {name: free_port() for name in NAMES["web"]}
        self.port = free_port()
        self.apps = AppStack(logs, stack_env(config, WEB_TRUSTED_PROXIES="1"), APP)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, name: str) -> None:
        env = {"WEB_PORT": str(self.web_ports[name]), "WEB_WORKERS": "2"} if name in self.web_ports else {}
        self.apps.start(name, env)

    def start_balancer(self) -> None:
        start_balancer(self.apps, self.port, self.web_ports, self.config)
        reaches_both(self.base_url, set(self.web_ports))

    def stop_all(self) -> None:
        self.apps.close()


class ClusterApps(ChaosApps):
    """ChaosApps over two of each process: a fault of a kind picks one instance of it."""

    def __init__(self, config: Config, logs: Path, rng: random.Random):
        logs.mkdir(parents=True, exist_ok=True)
        self.stack = ClusterStack(config, logs)
        self.killed = Counter()
        self.groups = set()
        self.rng = rng

    def names(self, kind: str | None = None) -> list[str]:
        return [name for k in KINDS if kind in (None, k) for name in NAMES[k]]

    def kill(self, name: str) -> None:
        super().kill(self.rng.choice(NAMES[name]) if name in KINDS else name)

    def web_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.stack.web_ports[name]}"

    def pid(self, name: str) -> int:
        if name == "web":  # the gunicorn master of the first web that runs
            return next(pid for n in NAMES["web"] if (pid := self.supervisor.pid(n)))
        return self.supervisor.pid(name)


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
        names = ["kafka-1", "kafka-2",
                 "kafka-3"] if self.kind == "kafka" else [f"redis-{i}" for i in range(1, 7)]
        return -9 if any(not self.engines.running(name) for name in names if name != self.killed) else None

    def wipe(self) -> None:
        raise RuntimeError("the cluster's Redis files are never deleted")


__all__ = ["ClusterApps", "ClusterStore", "cluster_target"]
