"""The programs every stack runs: the app processes (web, relay, worker, ingest) and HAProxy, each
as one command line, and the waits that say a stack is ready.

`make up`, the cluster, the end-to-end fixtures, the benchmarks and the chaos runs all take their
programs from here, so a process runs the same way wherever it runs; only its environment and its
Policy differ.
"""

from __future__ import annotations

import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from scripts.stack.supervisor import ROOT, Policy, Process, Program, Supervisor

# Each kind's command (after the venv's interpreter). A name is a kind, maybe numbered: web-2, relay-1.
COMMANDS = {
    "web": ["-m", "gunicorn", "-c", "gunicorn.conf.py", "app:create_app()"],
    "relay": ["-m", "outbox_relay"],
    "worker": ["-m", "cache_worker"],
    "ingest": ["-m", "score_ingest"],
}
APPS = tuple(COMMANDS)
# Engines (and their exporters) first, then the consumers, then the webs, the balancer and Prometheus;
# stopped the other way round.
PRIORITY = {
    "postgres": 100,
    "redis": 110,
    "kafka": 120,
    "exporter": 130,
    "connect": 150,
    "relay": 200,
    "worker": 200,
    "ingest": 200,
    "web": 300,
    "lb": 400,
    "prometheus": 450,
}
HAPROXY_CFG = ROOT / "scripts" / "haproxy.cfg"


class StackError(Exception):
    """A stack could not be brought to the state asked for; its message is one line (and a log's tail)."""


def kind_of(name: str) -> str:
    """web-2 is a web, kafka-3 a kafka, web-pair-1 a web."""
    return name.split("-", 1)[0]


def app(
    name: str,
    run_dir: Path,
    policy: Policy,
    env: dict[str, str] | None = None,
    ports: dict[int, str] | None = None,
) -> Program:
    """App process `name` (a kind of COMMANDS, maybe numbered) with `env` on top of the stack's.

    A web's gunicorn workers share a Prometheus directory of the web's own (emptied by
    gunicorn.conf.py at each start of the master)."""
    kind = kind_of(name)
    env = dict(env or {})
    if kind == "web" and "PROMETHEUS_MULTIPROC_DIR" not in env:
        metrics_dir = run_dir / f"prometheus-{name}"
        metrics_dir.mkdir(parents=True, exist_ok=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    # gunicorn's graceful_timeout is 10 s; the consumers flush within STOP_TIMEOUT_S of the old script.
    return Program(
        name,
        [sys.executable, *COMMANDS[kind]],
        policy,
        env,
        stop_wait_s=20 if kind == "web" else 15,
        priority=PRIORITY[kind],
        ports=dict(ports or {}),
    )


def balancer(
    name: str,
    policy: Policy,
    port: int,
    webs: list[int],
    edge: dict[str, str],
    setting: str = "CLUSTER_WEB_PORT",
) -> Program:
    """HAProxy on `port` in front of two webs (one named twice: in front of it alone), from the cluster's
    configuration (scripts/haproxy.cfg), its edge check keyed by `edge` (app/web/edge.py's haproxy.env)."""
    env = {
        "LB_BIND": f"127.0.0.1:{port}",
        "LB_WEB_1": f"127.0.0.1:{webs[0]}",
        "LB_WEB_2": f"127.0.0.1:{webs[-1]}",
        **edge,
    }
    # -db: in the foreground, logging to stdout, which the supervisor writes to the program's log.
    return Program(
        name,
        ["haproxy", "-db", "-f", str(HAPROXY_CFG)],
        policy,
        env,
        priority=PRIORITY["lb"],
        ports={port: setting},
    )


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 200 <= response.status < 300
    except OSError:
        return False


def wait_for(
    check: Callable[[], bool],
    what: str,
    supervisor: Supervisor,
    names: list[str],
    timeout_s: float,
    every_s: float = 0.2,
) -> None:
    """Until `check()` holds; StackError when it does not within `timeout_s`, or as soon as one of `names`
    has stopped for good (exited, FATAL), with the end of its log."""
    deadline = time.monotonic() + timeout_s
    while not check():
        for name in names:
            state = supervisor.state(name)
            if state in ("EXITED", "FATAL", "STOPPED"):
                raise StackError(
                    f"{name} is {state} while waiting for {what}; "
                    f"{supervisor.run_dir / name}.log ends:\n"
                    f"{supervisor.tail(supervisor.run_dir / f'{name}.log')}"
                )
        if time.monotonic() > deadline:
            tails = "\n".join(supervisor.tail(supervisor.run_dir / f"{name}.log", 15) for name in names)
            raise StackError(f"no {what} within {timeout_s:.0f} s; the logs end:\n{tails}")
        time.sleep(every_s)


def wait_http(supervisor: Supervisor, name: str, url: str, timeout_s: float = 90) -> None:
    wait_for(lambda: http_ok(url), f"{url} answering", supervisor, [name], timeout_s)


class AppStack:
    """App processes (and a balancer) under a supervisord of their own in `run_dir`: the stacks of the
    end-to-end fixtures, the benchmarks and the chaos runs. `environ` is every process's environment (a
    test's configuration, tests.helpers.stack_env); `start` adds a process's own on top."""

    def __init__(self, run_dir: Path, environ: dict[str, str], policy: Policy):
        run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir, self.environ, self.policy = run_dir, dict(environ), policy
        self.supervisor = Supervisor(run_dir)
        self.daemon = self.supervisor.start_daemon(self.environ)

    def own_env(self, env: dict[str, str]) -> dict[str, str]:
        """What of `env` differs from every process's environment."""
        return {key: value for key, value in env.items() if self.environ.get(key) != value}

    def start(self, name: str, env: dict[str, str] | None = None, wait: bool = True) -> Process:
        """Start app process `name` with `env` on top of the stack's (a process running with another
        environment is stopped and started with this one); with `wait`, once its policy counts it
        started (a web: once it answers /healthz too)."""
        env = self.own_env(env or {})
        self.supervisor.define(app(name, self.run_dir, self.policy, env))
        self.supervisor.start(name, wait=wait)
        if wait and kind_of(name) == "web":
            port = env.get("WEB_PORT", self.environ.get("WEB_PORT"))
            wait_http(self.supervisor, name, f"http://127.0.0.1:{port}/healthz")
        return self.process(name)

    def start_balancer(self, name: str, port: int, webs: list[int], edge: dict[str, str]) -> Process:
        self.supervisor.define(balancer(name, self.policy, port, webs, edge))
        self.supervisor.start(name)
        return self.process(name)

    def process(self, name: str) -> Process:
        return self.supervisor.process(name)

    def stop(self, name: str) -> None:
        self.supervisor.stop(name)

    def kill(self, name: str, group: bool = False) -> int:
        """SIGKILL the process (the gunicorn master alone, or with `group` its workers too): a crash,
        no `finally` runs. Returns the pid killed."""
        return self.supervisor.kill(name, group=group)

    def close(self) -> None:
        """Stop every process and the supervisord (a killed gunicorn master's workers died with it:
        gunicorn.conf.py). The programs of one priority stop together (the webs, the consumers), from the
        highest (the balancer) down, clients before what they use: supervisord's own shutdown stops one
        program at a time, each waited for."""
        tiers: dict[int, list[str]] = {}
        for name in self.supervisor.infos():
            tiers.setdefault(PRIORITY.get(kind_of(name), 0), []).append(name)
        for priority in sorted(tiers, reverse=True):
            self.supervisor.stop_together(tiers[priority])
        self.supervisor.shutdown()
        try:
            self.daemon.wait(30)
        except Exception:  # noqa: BLE001 - shutdown waited for it already; this only reaps it
            pass
