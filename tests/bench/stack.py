"""The bench stack: its own gunicorn, relay and worker (and the score ingest while a benchmark needs it)
under a supervisor of its own (scripts/stack), and the state every benchmark starts from.

Each benchmark starts from the same stack, whatever ran or failed before it (conftest's `known_stack`):
- `stop_leftover_load`: no load generator of an earlier benchmark still runs (a child process of the
  suite that is not a stack process; a load thread, whose `stopping` event is set);
- `restore`: the STANDARD processes run, each with the suite's environment (a relay a benchmark
  started in another mode or to another topic is replaced, a process that exited is started again),
  and no other (the score ingest is stopped);
- `settle`: the web answers, the relay has published every event committed before the check, and the
  worker's group has committed every message the run's topic held once the relay was done.
A benchmark that stops a stack process does it in `with stack.stopped(...)`, which restores the stack
on the way out, whether the benchmark passed or not.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests
from sqlalchemy import Engine, text

from app.core.config import Config
from app.core.db import get_engine
from app.core.dead_letters import topic_state
from app.core.kafka import make_consumer
from app.core.outbox import capture_slot, drop_slots_of_database, engine_slot_name, outbox_lag
from outbox_relay.pgoutput import lsn_to_int
from scripts.stack.programs import AppStack
from scripts.stack.supervisor import MANUAL, Policy, Process
from tests.helpers import free_port, stack_env, wait_until

# The processes every benchmark finds running, as the suite started them.
STANDARD = ("web", "relay", "worker")


def wal_head(engine: Engine) -> int:
    """The server's WAL flush position, as an integer."""
    with engine.connect() as db:
        return lsn_to_int(db.execute(text("SELECT pg_current_wal_flush_lsn()::text")).scalar())


def drop_capture_slot(engine: Engine) -> None:
    """Drop the relay's replication slot of the bench database (no relay may be reading it): a relay in
    wal mode makes a fresh one at its start, from the WAL's end, and backfills the rows never marked."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
        drop_slots_of_database(db, engine.url.database, only=engine_slot_name(engine))


@dataclass
class BenchStack:
    """The suite's processes under a supervisor of their own (scripts/stack), Policy MANUAL by default:
    a process that exits stays down, and `restore` says so before the next benchmark (a benchmark's
    figures never silently include a restart). The chaos run passes APP: the supervisor restarts."""
    config: Config
    logs: Path
    policy: Policy = MANUAL
    port: int = 0
    processes: dict[str, Process] = field(default_factory=dict)
    # What `start` added to (or overrode in) the suite's environment of each running process.
    environments: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.apps = AppStack(self.logs, stack_env(self.config), self.policy)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, name: str, **env: str) -> Process:
        """Start a stack process; `env` adds to (or overrides) its environment, e.g. RELAY_MODE. A web
        returns once it answers /healthz; the others as soon as they are spawned."""
        extra: dict[str, str] = dict(env)
        if name == "web":
            self.port = self.port or free_port()
            extra.update(WEB_PORT=str(self.port), WEB_WORKERS=os.environ.get("BENCH_WEB_WORKERS", "2"))
        process = self.apps.start(name, extra, wait=name == "web")
        self.processes[name] = process
        self.environments[name] = dict(env)
        return process

    def answers(self) -> bool:
        try:
            return requests.get(self.base_url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        self.environments.pop(name, None)
        if process is not None:
            process.stop()

    def stop_all(self) -> None:
        """Every process, then the supervisor."""
        self.processes.clear()
        self.environments.clear()
        self.apps.close()

    @contextmanager
    def stopped(self, *names: str) -> Iterator[None]:
        """Stop these processes for the block; the standard stack is back after it, however it ended."""
        for name in names:
            self.stop(name)
        try:
            yield
        finally:
            self.restore()

    def restore(self) -> list[str]:
        """Bring the processes back to the standard stack (see the top); returns what it changed."""
        changed = []
        for name, process in list(self.processes.items()):
            if name not in STANDARD:
                why = "not part of the standard stack"
            elif (code := process.poll()) is not None:
                why = f"it had exited with {code}"
            elif self.environments.get(name):
                why = f"it ran with {self.environments[name]}"
            else:
                continue
            self.stop(name)
            changed.append(f"stopped {name}: {why}")
        for name in STANDARD:
            if name not in self.processes:
                if name == "web":
                    self.port = 0  # the old port may still be held by a dying worker
                self.start(name)
                changed.append(f"started {name}")
        return changed

    def settle(self, timeout_s: float) -> float:
        """Wait until the web answers, the relay has published every event committed before this call,
        and then the worker has applied the run's topic up to its end; returns the seconds it took."""
        engine = get_engine(self.config.database_url)
        started = time.monotonic()

        def left() -> float:
            return max(1.0, started + timeout_s - time.monotonic())

        wait_until(self.answers, "the bench web does not answer /healthz", left(), every_s=0.2)
        if self.config.relay_mode == "wal":
            head = wal_head(engine)

            def relayed() -> bool:
                """The slot is past `head`, and its backfill (of a slot made since) is done."""
                slot = capture_slot(engine)
                if not (slot and slot.confirmed_flush_lsn and lsn_to_int(slot.confirmed_flush_lsn) >= head):
                    return False
                with engine.connect() as db:
                    return db.execute(text("SELECT count(*) FROM outbox_capture WHERE slot_name = :slot"),
                                      {"slot": slot.name}).scalar() > 0
        else:
            def relayed() -> bool:
                return outbox_lag(engine, "poll")[1] == 0
        wait_until(relayed, "the bench relay did not publish the outbox's backlog", left(), every_s=0.2)
        topic = self.config.kafka_topic
        consumer = make_consumer(self.config, **{"enable.auto.commit": False})
        try:
            end = topic_state(consumer, topic)
            if end is not None:
                wanted = {p: high for p, (_, high) in end.watermarks.items()}

                def applied() -> bool:
                    now = topic_state(consumer, topic)
                    return all(now.committed[p] >= offset for p, offset in wanted.items())
                wait_until(applied, f"the bench worker did not apply {topic} to its end", left(), every_s=0.2)
        finally:
            consumer.close()
        return time.monotonic() - started

    def web_workers(self) -> list[psutil.Process]:
        return psutil.Process(self.processes["web"].pid).children()

    def web_rss(self) -> int:
        return sum(p.memory_info().rss for p in self.web_workers())

    def process_cpu(self, name: str) -> float:
        """CPU seconds used so far by a stack process and its children."""
        return tree_cpu_s(self.processes[name].pid)


def stop_leftover_load(stack: BenchStack, grace_s: float = 10) -> list[str]:
    """Stop the load generators an earlier benchmark left running (a failed one may skip its own
    cleanup): child processes of the suite other than the stack's (wrk, pgbench, py-spy...), and the
    suite's load threads (each has a `stopping` event). Returns what it stopped."""
    stopped = []
    ours = {stack.apps.daemon.pid}  # the supervisor, whose children the stack's processes are
    for child in psutil.Process().children():
        if child.pid in ours:
            continue
        try:
            if child.status() == psutil.STATUS_ZOMBIE:  # finished, only not reaped
                child.wait(grace_s)
                continue
            label = " ".join(child.cmdline()[:2]) or child.name()
            child.terminate()
            try:
                child.wait(grace_s)
            except psutil.TimeoutExpired:
                child.kill()
                child.wait(grace_s)
        except psutil.NoSuchProcess:
            continue
        stopped.append(f"stopped process {child.pid} ({label})")
    for thread in threading.enumerate():
        stopping = getattr(thread, "stopping", None)
        if thread.is_alive() and isinstance(stopping, threading.Event):
            stopping.set()
            thread.join(grace_s)
            stopped.append(f"stopped thread {thread.name} ({type(thread).__name__})"
                           + ("" if not thread.is_alive() else f": still running after {grace_s:.0f} s"))
    return stopped


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its children (a gunicorn master and its
    workers)."""
    root = psutil.Process(pid)
    total = 0.0
    for process in [root] + root.children(recursive=True):
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total
