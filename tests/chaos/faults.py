"""The faults, injected one at a time on a thread while the load runs.

Each kind is a real failure of one component, followed by what brings it back: for the app
processes their supervisor (scripts/stack, Policy APP as under `make up`), for the private stores the
restart an operator would do, the same way the store was first started:

- web_master: SIGKILL the gunicorn master; its workers notice and exit; the supervisor starts the web again.
- web_worker: SIGKILL one gunicorn worker; the master forks a new one.
- relay, worker: SIGKILL the process; the supervisor starts it again.
- kafka: SIGKILL the broker; start it again on the same data directory.
- redis: SIGKILL Redis; start it again on its AOF and RDB files.
- pg_backends (beyond the issue's list): terminate every PostgreSQL connection of the services to
  the run's database (the shared server stays up), so commits fail mid-flight: the answer path's
  `outcome_unknown` and retry-alone branches run, and the relay's LISTEN connection drops.
- redis_wipe (once, in the second half): SIGKILL Redis, delete its files, start it empty; the worker
  and the read path rebuild the boards from PostgreSQL.
- postgres (the cluster only): SIGKILL the PostgreSQL leader node; Patroni promotes the synchronous
  standby; the fault lasts until the first write through pg-lb is acknowledged by the new leader and the
  old node has rejoined (tests/chaos/cluster.py's ClusterPostgres). Spread evenly over the plan, so a
  fault running long cannot push them all past the end of the load.

A store stays down for a random moment (up to DOWN_S) so that work piles up behind it; an app process
is down as long as its restart takes. The plan spreads the faults evenly over the load, in an order
drawn from the run's seed; a fault that takes long to recover delays the next one, and faults never
overlap. Between faults the thread watches the processes: one that exits without being killed is a
finding (an app process: an exit the supervisor counted beyond the run's kills; a store: restarted).
"""
from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.chaos.apps import ChaosApps
from tests.chaos.cluster import ClusterPostgres, ClusterStore
from tests.chaos.infra import ChaosKafka, PrivateRedis, terminate_backends
from tests.chaos.settings import say

KINDS = ("web_master", "web_worker", "relay", "worker", "kafka", "redis", "pg_backends")
DOWN_S = 3.0
# How often the processes are looked at between faults.
WATCH_S = 0.5
# Load before the first fault and after the last one: every fault hits a system under steady load.
MARGIN = 0.1


@dataclass
class Injected:
    kind: str
    at_s: float         # since the load started
    recovered_s: float  # from the kill until it was running again (the web: answering /healthz)


@dataclass
class Crash:
    name: str
    code: int
    at_s: float


@dataclass
class Faults:
    apps: ChaosApps
    redis: PrivateRedis | ClusterStore
    kafka: ChaosKafka | ClusterStore
    rng: random.Random
    postgres: ClusterPostgres | None = None  # the cluster's PostgreSQL leader among the faults
    log: list[Injected] = field(default_factory=list)
    crashes: list[Crash] = field(default_factory=list)
    error: BaseException | None = None

    def plan(self, seconds: float, per_kind: int) -> list[tuple[float, str]]:
        kinds = [k for k in KINDS for _ in range(per_kind)]
        self.rng.shuffle(kinds)
        # The wipe comes in the second half: by then sessions have ended, whose boards only a read rebuilds.
        # (Never on the cluster: its nodes' files are the cluster's.)
        if not isinstance(self.redis, ClusterStore):
            kinds.insert(self.rng.randint((len(kinds) + 1) // 2, len(kinds)), "redis_wipe")
        if self.postgres is not None:
            every = (len(kinds) + per_kind) // per_kind
            for i in range(per_kind):
                kinds.insert(i * every, "postgres")
        first, last = seconds * MARGIN, seconds * (1 - MARGIN)
        step = (last - first) / max(1, len(kinds) - 1)
        return [(first + i * step, kind) for i, kind in enumerate(kinds)]

    def counts(self) -> Counter:
        return Counter(f.kind for f in self.log)

    def start(self, plan: list[tuple[float, str]], started: float, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self._run, args=(plan, started, stop), name="chaos-faults",
                                  daemon=True)
        thread.start()
        return thread

    def _run(self, plan: list[tuple[float, str]], started: float, stop: threading.Event) -> None:
        try:
            for at_s, kind in plan:
                while (left := started + at_s - time.monotonic()) > 0:
                    if stop.wait(min(left, WATCH_S)):
                        return
                    self.watch(started)
                t0 = time.monotonic()
                self.inject(kind, t0 - started)
                self.log.append(Injected(kind, t0 - started, time.monotonic() - t0))
            while not stop.wait(WATCH_S):
                self.watch(started)
        except BaseException as exc:  # noqa: BLE001 - reported by the run, which then fails
            self.error = exc

    def watch(self, started: float) -> None:
        """Remember every exit no fault asked for: it is a finding. An app process was restarted by its
        supervisor (which counts its exits); a store is restarted here, as Docker's `restart:
        unless-stopped` would. Only this thread kills and restarts."""
        at_s = time.monotonic() - started
        for name, exits in self.apps.unasked_exits().items():
            for _ in range(exits - sum(1 for crash in self.crashes if crash.name == name)):
                code = (self.apps.supervisor.info(name) or {}).get("exitstatus", -1)
                self.crashes.append(Crash(name, code, at_s))
                say(f"{name} exited by itself (code {code}) at {at_s:.0f} s; its supervisor restarted it")
        for name, store in (("redis", self.redis), ("kafka", self.kafka)):
            code = store.exit_code()
            if code is None:
                continue
            self.crashes.append(Crash(name, code, at_s))
            say(f"{name} exited by itself (code {code}) at {at_s:.0f} s; restarting it")
            store.start()

    def inject(self, kind: str, at_s: float = 0.0) -> None:
        def down() -> None:
            time.sleep(self.rng.uniform(0, DOWN_S))

        if kind == "web_worker":
            self.apps.kill_web_worker(self.rng.choice)
        elif kind in ("web_master", "relay", "worker"):
            # Returns once the supervisor has started it again.
            self.apps.kill("web" if kind == "web_master" else kind)
        elif kind == "kafka":
            self.kafka.kill()
            down()
            self.kafka.start()
        elif kind == "postgres" and self.postgres is not None:
            self.postgres.fail_over(at_s)
        elif kind == "pg_backends":
            terminate_backends(self.apps.stack.config.database_url)
        elif kind in ("redis", "redis_wipe"):
            self.redis.kill()
            if kind == "redis_wipe":
                self.redis.wipe()
            down()
            self.redis.start()
        else:
            raise ValueError(kind)
