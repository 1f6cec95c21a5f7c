"""The whole system as processes: gunicorn (two workers), the outbox relay, the cache worker and the
score ingest, under a supervisor of their own (scripts/stack, the one launcher of every stack).

They run against this test run's database, Redis keys and topics, on free loopback ports: the session
fixture `live_stack` (tests/conftest.py), shared by the end-to-end tests and the cluster's fault tests.
On the cluster (`make test-cluster`) there are two of each, as production runs them: `web-1` and
`web-2` behind an HAProxy of the fixture's own (scripts/haproxy.cfg, the cluster's balancer), which is
what `base_url` and `ws_url` name; `relay-1`/`relay-2` (one leads), `worker-1`/`worker-2` and
`ingest-1`/`ingest-2` (consumer groups). With RELAY_MODE=debezium Kafka Connect relays the outbox
(scripts/stack/connect.py, its connector applied through the REST API as `make up` applies it), and the
relay processes only keep the outbox's partitions: one standalone worker `connect`, or on the cluster two
distributed workers `connect-1` and `connect-2` of a group of the run's own (its three topics
`test.<run>.quiz.events.connect.*`, replication 3), as `make up-cluster` runs them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

from app import create_app
from app.core.config import Config
from app.web.edge import write_edge_files
from scripts.stack.connect import ConnectGroup, apply_outbox_connector, connect_program
from scripts.stack.programs import APPS, AppStack, kind_of
from scripts.stack.supervisor import MANUAL, Process
from tests.helpers import CLUSTER, free_port, stack_env, wait_until


@dataclass
class LiveStack:
    """The processes run under a supervisor of the stack's own (scripts/stack) with Policy MANUAL: a
    process a test kills stays dead until the test starts it again (`restart`)."""

    base_url: str
    ws_url: str
    config: object
    stack: AppStack
    logs: Path
    envs: dict  # each process's environment, to start it again
    connect: dict[str, Config] = field(default_factory=dict)  # RELAY_MODE=debezium: each worker's config

    @property
    def processes(self) -> dict[str, Process]:
        """Each process as a test holds a child: its pid now, `poll()`, `wait()`."""
        names = list(self.envs) + (["lb"] if CLUSTER else [])
        return {name: self.stack.process(name) for name in names}

    def metrics_url(self, web: str) -> str:
        """The /metrics of web `web`'s gunicorn master (its own port on 127.0.0.1)."""
        return f"http://127.0.0.1:{self.envs[web]['WEB_METRICS_PORT']}/metrics"

    @property
    def web_url(self) -> str:
        """The first web server itself, not the balancer in front of it (on the single stack, the same)."""
        web = next(name for name in self.envs if kind_of(name) == "web")
        return f"http://127.0.0.1:{self.envs[web]['WEB_PORT']}"

    def log_of(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def restart(self, name: str, **env: str) -> None:
        """Start `name` again (after a test stopped or killed it) as the fixture first started it, with
        `env` on top from now on (a web: once it answers /healthz)."""
        self.restart_together([name], **env)

    def restart_together(self, names: list[str], **env: str) -> None:
        """`restart` of each of `names` with the same `env`, at once: all stopped, all started, then each
        waited for (a web's start is mostly its own wait for /healthz, which overlaps the others')."""
        for name in names:
            self.envs[name].update(env)
        self.stack.supervisor.stop_together(names)
        for name in names:
            self.stack.start(name, self.envs[name], wait=False)
        for name in names:  # each counted started; the webs answering /healthz
            self.stack.start(name, self.envs[name])


def names_of(cluster: bool) -> dict[str, list[str]]:
    """The processes of each kind: one of each on the single stack; two of each on the cluster."""
    return {kind: [f"{kind}-1", f"{kind}-2"] if cluster else [kind] for kind in APPS}


NAMES = names_of(CLUSTER)


def upstream_of(url: str) -> str | None:
    """The web that answered `url` through the balancer (its X-Upstream header), or None."""
    try:
        response = requests.get(url, timeout=2)
    except requests.RequestException:
        return None
    return response.headers.get("X-Upstream") if response.status_code == 200 else None


def start_balancer(
    stack: AppStack, port: int, webs: dict[str, int], config: Config, name: str = "lb"
) -> None:
    """HAProxy on `port` in front of web-1 and web-2 (one web named twice: in front of it alone), from the
    cluster's own configuration, its edge check keyed as `config`'s webs sign (app/web/edge.py)."""
    edge = write_edge_files(config, create_app(config), stack.run_dir / f"{name}-edge")
    stack.start_balancer(name, port, list(webs.values()), edge)


def reaches_both(url: str, webs: set[str]) -> None:
    """Until the balancer at `url` has answered /healthz from each of `webs` (its X-Upstream header)."""
    seen: set[str | None] = set()
    wait_until(
        lambda: seen.add(upstream_of(f"{url}/healthz")) or webs <= seen,
        f"the balancer at {url} did not reach {sorted(webs)}",
        every_s=0.2,
    )


def start_connect(apps: AppStack, config: Config, cluster: bool) -> dict[str, Config]:
    """Kafka Connect relaying this run's outbox, as `make up` (one standalone worker) or `make up-cluster`
    (two distributed ones, `cluster`) run it under RELAY_MODE=debezium: each worker's configuration."""
    from cache_worker.process import aggregate_types
    from outbox_relay.debezium import connector_config

    group = ConnectGroup(f"{config.kafka_topic}.connect") if cluster else None
    workers = {name: config.replace(connect_port=free_port(), connect_metrics_port=free_port())
               for name in (["connect-1", "connect-2"] if cluster else ["connect"])}
    for name, own in workers.items():
        apps.supervisor.define(connect_program(name, apps.run_dir, MANUAL, own,
                                               connector_config(own, aggregate_types()), group))
        apps.supervisor.start(name, wait=False)
    first = next(iter(workers))
    apply_outbox_connector(apps.supervisor, first, workers[first], from_file=not cluster)
    return workers


def run_live_stack(config) -> Iterator[LiveStack]:
    """The stack of `config` (its database migrated, its topics made) while the generator runs: the
    session fixture `live_stack` (tests/conftest.py, shared by tests/e2e and tests/cluster)."""
    logs = Path(tempfile.mkdtemp(prefix="livequiz-e2e-"))
    web_ports = {name: free_port() for name in NAMES["web"]}
    port = free_port() if CLUSTER else web_ports["web"]
    # The address players open: the balancer's on the cluster (what the host's screen and QR code show).
    env = stack_env(config, WEB_WORKERS="2", PUBLIC_URL=f"http://127.0.0.1:{port}")
    if CLUSTER:
        env["WEB_TRUSTED_PROXIES"] = "1"  # behind the balancer, as on the cluster
    envs = {}
    for name in (n for names in NAMES.values() for n in names):
        envs[name] = dict(env)
        if name in web_ports:
            envs[name].update(WEB_PORT=str(web_ports[name]), WEB_METRICS_PORT=str(free_port()))
        else:  # its /metrics from the start, as the stacks run them: the monitoring tests restart none
            envs[name][f"{kind_of(name).upper()}_METRICS_PORT"] = str(free_port())
    apps = AppStack(logs, env, MANUAL)
    stack = LiveStack(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", config, apps, logs, envs)
    try:
        for name in envs:
            apps.start(name, envs[name], wait=False)
        for name in envs:  # each counted started; the webs answering /healthz
            apps.start(name, envs[name])
        if config.relay_mode == "debezium":
            stack.connect = start_connect(apps, config, CLUSTER)
        if CLUSTER:
            start_balancer(apps, port, web_ports, config)
            reaches_both(stack.base_url, set(web_ports))
        yield stack
    finally:
        apps.close()
