"""CHAOS_TARGET=cluster (`make chaos-cluster`): the same run on the clustered topology that `make
up-cluster` started.

The run's processes are two of each, as the cluster runs them (tests/live_stack.py starts them the
same way; here under a supervisor that restarts them, Policy APP): `web-1` and `web-2` behind an
HAProxy of the run's own, two relays (one leads) and two workers, on the run's own database, topics
(replicated as the brokers replicate: 3 times, min ISR 2) and Redis key prefix. The stores are the
cluster's: a `kafka` fault SIGKILLs one of its three brokers, a `redis` fault one of its Redis masters
(its replica takes over); `python -m scripts.stack cluster up` starts the node again
(tests/cluster/engines.py's ClusterEngines). A `postgres` fault SIGKILLs the PostgreSQL leader node (its
Patroni and its PostgreSQL): the synchronous standby takes over, the fault waits for the first write
the new leader acknowledges through pg-lb, then starts the old node again (it rejoins as a replica);
each failover's figures are in the run's table (`PostgresFailover`). A process fault kills one instance
of two. Redis's data
is never deleted on the cluster (no `redis_wipe`): the cluster is shared by the run with nobody, but
its nodes' files are the cluster's.
"""
from __future__ import annotations

import os
import random
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psycopg

from app.core.config import Config
from scripts.stack.programs import AppStack
from scripts.stack.supervisor import APP
from tests.chaos.apps import ChaosApps
from tests.chaos.settings import say
from tests.cluster.engines import ClusterEngines
from tests.cluster.failover import FAILOVER_S
from tests.helpers import WAIT_S, free_port, stack_env, wait_until
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

    def start(self, name: str, **env: str) -> None:
        """Start `name` with `env` on top of the stack's (one running with another is started again)."""
        if name in self.web_ports:
            env = {"WEB_PORT": str(self.web_ports[name]), "WEB_WORKERS": "2", **env}
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


@dataclass
class PostgresFailover:
    """One `postgres` fault: the leader `old` killed at `at_s` (since the load started), `new` leading,
    the first write through pg-lb `first_write_s` after the kill; in wal mode the events the relays
    republished from their fence, of them those written before the kill, the events retained then (what a
    relay without its fence republishes) and the rows marked meanwhile (a republish marks what it sends)."""
    at_s: float
    old: str
    new: str
    first_write_s: float
    retained: int
    republished: int | None = None
    before_kill: int | None = None
    marked: int | None = None

    def within_bound(self) -> bool:
        return self.republished is None or (
            self.republished == self.marked and self.before_kill < self.retained)

    def row(self) -> str:
        line = f"at {self.at_s:.0f} s {self.old} -> {self.new}: first write {self.first_write_s:.1f} s"
        if self.republished is None:
            return line + "; nothing republished (poll mode)"
        return (line + f"; republished {self.republished} ({self.before_kill} written before the kill; "
                f"{self.retained} retained then)")


class ClusterPostgres:
    """The `postgres` fault: the cluster's PostgreSQL leader killed under the run's load."""

    PROBE = "chaos_failover_probe"

    def __init__(self, engines: ClusterEngines, config: Config, logs: Path):
        self.engines, self.logs, self.mode = engines, logs, config.relay_mode
        self.conninfo = config.database_url.replace("postgresql+psycopg", "postgresql")
        self.failovers: list[PostgresFailover] = []

    def republishes(self) -> dict[str, list[int]]:
        """Relay -> the events each of its republishes sent so far (its log: a line a republish)."""
        return {path.stem: [int(n) for n in re.findall(r"republished (\d+) events of slot",
                                                       path.read_text(errors="replace"))]
                for path in sorted(self.logs.glob("relay-*.log"))}

    def republished_since(self, before: dict[str, list[int]]) -> list[int]:
        """The republishes logged since `before` (an earlier `republishes()`), whichever relay made them."""
        return [count for relay, counts in self.republishes().items()
                for count in counts[len(before.get(relay, [])):]]

    def _count(self, conn, since=None) -> tuple[int, int]:
        """(events, marked events); with `since`: marked events written before it."""
        if since is None:
            return conn.execute("SELECT count(*), count(published_at) FROM events").fetchone()
        return conn.execute("SELECT count(*) FILTER (WHERE published_at IS NOT NULL AND created_at < %s), "
                            "count(published_at) FROM events", (since,)).fetchone()

    def _first_write(self, port: int) -> float:
        """When a write through pg-lb is first acknowledged by the node on `port`."""
        deadline = time.monotonic() + FAILOVER_S
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=2) as conn:
                    while time.monotonic() < deadline:
                        by = conn.execute(f"INSERT INTO {self.PROBE} DEFAULT VALUES "
                                          "RETURNING inet_server_port()").fetchone()[0]
                        if by == port:
                            return time.monotonic()
                        time.sleep(0.05)
            except psycopg.Error:
                time.sleep(0.1)
        raise AssertionError(f"no write acknowledged by the node on port {port} within {FAILOVER_S} s")

    def fail_over(self, at_s: float) -> None:
        members = self.engines.postgres_members()
        old = self.engines.postgres_leader()
        new = next((name for name, m in members.items() if m["role"] == "sync_standby"), None)
        assert old and new, members
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {self.PROBE} "
                         "(at timestamptz DEFAULT clock_timestamp())")
            retained, marked = self._count(conn)
            killed_wall = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        before = self.republishes()
        self.engines.crash_postgres(old)
        killed = time.monotonic()
        try:
            wait_until(lambda: self.engines.postgres_leader() == new, f"{new} did not take over from {old}",
                       timeout_s=FAILOVER_S)
            first = self._first_write(self.engines.postgres_port(new))
            failover = PostgresFailover(at_s, old, new, first - killed, retained)
            if self.mode == "wal":
                done = wait_until(lambda: self.republished_since(before),
                                  "no relay republished from its fence", timeout_s=WAIT_S)
                failover.republished = sum(done)
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    before_kill, now_marked = self._count(conn, killed_wall)
                # Every row marked at the kill was written before it: the new marks are this failover's.
                failover.before_kill, failover.marked = before_kill - marked, now_marked - marked
        finally:
            self.engines.restore()  # the old leader starts again and rejoins as a replica
        self.failovers.append(failover)
        say(f"postgres failover {failover.row()}")


__all__ = ["ClusterApps", "ClusterPostgres", "ClusterStore", "PostgresFailover", "cluster_target"]
