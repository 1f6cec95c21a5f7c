"""The chaos run, start to end: stores, processes, load with faults, convergence, audit, cleanup.

Exit status 0 when the audit found nothing (report.py says what fails a run), 1 otherwise, 130 on
Ctrl-C. Whatever happens, every process the run started is stopped and its temporary directory is
removed; when the run fails the logs (web, relay, worker, redis, kafka) are kept and their path is
printed. CHAOS_KEEP=1 keeps everything. The database `quiz_chaos` is left for inspection; the next
run drops it.
"""
from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path

from app.core.config import load_config
from app.core.kafka import ensure_topics
from app.core.redis_client import make_redis
from tests.bench.support import CpuMeter, raise_nofile
from tests.chaos import report
from tests.chaos.apps import ChaosApps
from tests.chaos.audit import audit
from tests.chaos.client import Client
from tests.chaos.cluster import ClusterApps, ClusterPostgres, ClusterStore, cluster_target
from tests.chaos.converge import State, converge, end_all_sessions
from tests.chaos.faults import Faults
from tests.chaos.hosts import Host, Lane, prepare_lane
from tests.chaos.infra import ChaosKafka, PrivateRedis, audit_engine, fresh_database, release_slots
from tests.chaos.ledger import ACKED, Ledger
from tests.chaos.settings import Settings, chaos_config, say
from tests.cluster.engines import from_environment
from tests.helpers import drop_prefix_keys

ROOT = Path(__file__).resolve().parents[2]
PROGRESS_S = 10.0


class Run:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.id = time.strftime("%Y%m%d%H%M%S") + uuid.uuid4().hex[:4]
        self.workdir = Path(tempfile.mkdtemp(prefix="livequiz-chaos-"))
        self.rng = random.Random(settings.seed)
        self.ledger = Ledger()
        self.redis: PrivateRedis | None = None
        self.kafka: ChaosKafka | None = None
        self.postgres: ClusterPostgres | None = None
        self.apps: ChaosApps | None = None
        self.stop_faults = threading.Event()
        self.injector: threading.Thread | None = None
        self.peak_rate = 0.0
        self.started = time.monotonic()  # the load's start, set again when it starts

    def start_stack(self) -> None:
        if cluster_target():
            self.start_on_cluster()
            return
        say(f"run {self.id} in {self.workdir}: private Redis and Kafka, database quiz_chaos")
        (self.workdir / "redis").mkdir()
        self.redis = PrivateRedis(self.workdir / "redis")
        self.redis.start()
        (self.workdir / "kafka").mkdir()
        self.kafka = ChaosKafka(self.workdir / "kafka")
        self.kafka.start()
        self.config = chaos_config(self.id, self.redis.url, self.kafka.bootstrap)
        fresh_database(self.config.database_url)
        ensure_topics(self.config)
        self.engine = audit_engine(self.config.database_url)
        self.apps = ChaosApps(self.config, self.workdir / "logs")
        for name in ("web", "relay", "worker"):
            self.apps.start(name)
        say(f"web on {self.apps.base_url} (2 gevent workers), relay, worker; Redis :{self.redis.port}, "
            f"Kafka {self.kafka.bootstrap}")

    def start_on_cluster(self) -> None:
        """CHAOS_TARGET=cluster: two of each process on the running cluster's engines
        (tests/chaos/cluster.py)."""
        base = load_config()
        say(f"run {self.id} in {self.workdir}: the cluster's Kafka and Redis, database quiz_chaos")
        engines = from_environment()
        self.redis = ClusterStore(engines, "redis", self.rng)
        self.kafka = ClusterStore(engines, "kafka", self.rng)
        self.config = chaos_config(self.id, base.redis_url, base.kafka_bootstrap_servers,
                                   base.redis_cluster_nodes)
        fresh_database(self.config.database_url)
        ensure_topics(self.config)
        self.engine = audit_engine(self.config.database_url)
        self.apps = ClusterApps(self.config, self.workdir / "logs", self.rng)
        self.postgres = ClusterPostgres(engines, self.config, self.workdir / "logs")
        for name in self.apps.names():
            self.apps.start(name)
        self.apps.stack.start_balancer()
        say(f"balancer on {self.apps.base_url} in front of {', '.join(self.apps.names('web'))} "
            f"(2 gevent workers each), 2 relays, 2 workers; Redis Cluster {base.redis_cluster_nodes}, "
            f"Kafka {base.kafka_bootstrap_servers}")

    async def load(self, faults: Faults) -> tuple[list[Lane], float]:
        s = self.settings
        client = Client(self.apps.base_url, s.concurrency, self.ledger)
        lanes = list(await asyncio.gather(*(prepare_lane(client, s.players) for _ in range(s.sessions))))
        plan = faults.plan(s.seconds, s.per_kind)
        say(f"load: {s.sessions} sessions x {s.players} players, {s.concurrency} requests in flight, "
            f"{s.seconds:.0f} s, {len(plan)} faults, seed {s.seed}")
        loop = asyncio.get_running_loop()
        self.started = started = time.monotonic()
        self.injector = faults.start(plan, started, self.stop_faults)
        hosts = [Host(client, self.ledger, lane, s, random.Random(self.rng.random()), loop.time() + s.seconds)
                 for lane in lanes]
        progress = asyncio.create_task(self.progress(faults, started))
        try:
            await asyncio.gather(*(h.run() for h in hosts))
        finally:
            self.stop_faults.set()
            progress.cancel()
        load_s = time.monotonic() - started
        await asyncio.to_thread(self.injector.join)  # a fault in progress finishes its restart
        await client.close()
        if faults.error is not None:
            raise RuntimeError(f"a fault could not be injected or recovered from: {faults.error!r}")
        return lanes, load_s

    async def progress(self, faults: Faults, started: float) -> None:
        before = 0
        while True:
            await asyncio.sleep(PROGRESS_S)
            acked = sum(1 for a in self.ledger.answers if a.outcome == ACKED)
            rate = (acked - before) / PROGRESS_S
            self.peak_rate, before = max(self.peak_rate, rate), acked
            last = faults.log[-1] if faults.log else None
            say(f"{time.monotonic() - started:5.0f} s  {acked:,} acknowledged, {rate:,.0f}/s; faults "
                f"{len(faults.log)}"
                + (f" (last: {last.kind}, back in {last.recovered_s:.1f} s)" if last else ""))

    def execute(self) -> bool:
        self.start_stack()
        faults = Faults(self.apps, self.redis, self.kafka, self.rng, self.postgres)
        with CpuMeter() as cpu:
            lanes, load_s = asyncio.run(self.load(faults))
        say(f"machine CPU during the load {cpu.machine_cpu_pct:.0f}% of {os.cpu_count()} cores; "
            f"this load generator {cpu.self_cpu_s / cpu.wall:.2f} cores")
        for f in faults.log:
            say(f"fault at {f.at_s:5.1f} s: {f.kind:<11} back in {f.recovered_s:.1f} s")
        converge_s, state = self.settle(lanes, faults)
        findings = audit(self.config, self.engine, self.ledger)
        say(f"ops verify (exit {findings.verify_exit}): {findings.verify_summary}")
        summary = report.Summary(load_s, self.peak_rate, faults.counts(), faults.crashes, converge_s, state,
                                 findings, self.ledger, self.postgres.failovers if self.postgres else [])
        print(report.table(summary.rows()), flush=True)
        return not summary.failures()

    def settle(self, lanes: list[Lane], faults: Faults) -> tuple[float | None, State]:
        """End what is still live, then wait (bounded) until the outbox, the worker and the boards
        caught up."""
        ended = end_all_sessions(self.engine, self.apps.base_url, lanes)
        say(f"load stopped; sessions still live, now ended: {ended}")
        converge_s, state = converge(self.config, self.engine, make_redis(self.config),
                                     self.apps.base_url, lanes, self.settings.converge_s,
                                     lambda: faults.watch(self.started))
        say(f"converged in {converge_s:.1f} s; auditing" if converge_s is not None
            else f"did not converge within {self.settings.converge_s:.0f} s; auditing")
        for session_id, differences in list(state.differences.items())[:10]:
            say(f"board of {session_id} differs: {differences[:3]}")
        return converge_s, state

    def cleanup(self, passed: bool) -> None:
        self.stop_faults.set()
        if self.injector is not None:
            self.injector.join(120)  # a restart in progress would start a process after the stop below
        on_cluster = isinstance(self.redis, ClusterStore)
        stores = () if on_cluster else (self.kafka and self.kafka.kill, self.redis and self.redis.kill)
        for stop in (self.apps and self.apps.stop_all, *stores):
            if stop:
                try:
                    stop()
                except Exception as exc:  # noqa: BLE001 - go on stopping the others
                    say(f"cleanup: {exc!r}")
        if on_cluster and self.apps is not None:
            try:
                dropped = drop_prefix_keys(make_redis(self.config))
                say(f"cleanup: {dropped} keys of the run deleted from the cluster")
            except Exception as exc:  # noqa: BLE001 - the run's result stands
                say(f"cleanup: {exc!r}")
        if self.apps is not None:
            try:
                dropped_slots = release_slots(self.config.database_url)
                say(f"cleanup: replication slots dropped: {dropped_slots or 'none'}")
            except Exception as exc:  # noqa: BLE001 - the run's result stands
                say(f"cleanup: {exc!r}")
        if self.settings.keep:
            say(f"kept everything in {self.workdir}")
        elif passed:
            shutil.rmtree(self.workdir, ignore_errors=True)
        elif on_cluster:
            say(f"logs kept in {self.workdir}/logs")
        else:
            for data in ("redis", "kafka"):
                shutil.rmtree(self.workdir / data / "data", ignore_errors=True)
            say(f"logs kept in {self.workdir} (logs/, redis/redis.log, kafka/kafka.log)")


def _interrupt(signum, _frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    os.chdir(ROOT)  # alembic.ini and the services' working directory
    raise_nofile()
    signal.signal(signal.SIGTERM, _interrupt)
    run = Run(Settings())
    passed = False
    try:
        passed = run.execute()
        return 0 if passed else 1
    except KeyboardInterrupt:
        say("interrupted; cleaning up")
        return 130
    except BaseException:  # noqa: BLE001 - includes pytest's Failed raised by wait_until
        traceback.print_exc()
        return 1
    finally:
        run.cleanup(passed)
