"""The whole system as processes: gunicorn (two workers), the outbox relay, the cache worker and the
score ingest.

They run against this test run's database, Redis keys and topics, on free loopback ports. On the
cluster (`make test-cluster`) there are two of each, as production runs them: `web-1` and `web-2`
behind an HAProxy of the fixture's own (scripts/haproxy.cfg, the cluster's balancer), which is what
`base_url` and `ws_url` name; `relay-1`/`relay-2` (one leads), `worker-1`/`worker-2` and
`ingest-1`/`ingest-2` (consumer groups).
"""
from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from playwright.sync_api import Browser, expect, sync_playwright

from app import create_app
from app.config import Config
from app.edge import write_edge_files
from tests.helpers import CLUSTER, WAIT_S, free_port, stack_env, stop_process, wait_until

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@dataclass
class LiveStack:
    base_url: str
    ws_url: str
    config: object
    processes: dict
    logs: Path
    envs: dict  # each process's environment, to start it again

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

    def restart(self, name: str) -> None:
        """Start `name` again (after a test stopped or killed it) as the fixture first started it."""
        stop_process(self.processes[name])
        self.processes[name] = start_process(name, self.envs[name], self.logs)
        if kind_of(name) == "web":
            _wait_http(f"http://127.0.0.1:{self.envs[name]['WEB_PORT']}/healthz", self.processes[name])


def _wait_http(url: str, process: subprocess.Popen) -> None:
    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{url} server exited with {process.returncode}")
        try:
            return requests.get(url, timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_until(answers, f"{url} did not answer", every_s=0.1)


PROGRAMS = {
    "web": [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:create_app()"],
    "relay": [sys.executable, "-m", "outbox_relay"],
    "worker": [sys.executable, "-m", "cache_worker"],
    "ingest": [sys.executable, "-m", "score_ingest"],
}


def names_of(cluster: bool) -> dict[str, list[str]]:
    """The processes of each kind: one of each on the single stack; two of each on the cluster."""
    return {kind: [f"{kind}-1", f"{kind}-2"] if cluster else [kind] for kind in PROGRAMS}


NAMES = names_of(CLUSTER)


def kind_of(name: str) -> str:
    return name.split("-", 1)[0]


def start_process(name: str, env: dict, logs: Path) -> subprocess.Popen:
    """`name`'s program (a kind of PROGRAMS, maybe numbered: `relay-2`), appending to its log."""
    with open(logs / f"{name}.log", "ab") as log_file:
        return subprocess.Popen(PROGRAMS[kind_of(name)], cwd=ROOT, env=env, stdout=log_file,
                                stderr=subprocess.STDOUT, start_new_session=True)


def upstream_of(url: str) -> str | None:
    """The web that answered `url` through the balancer (its X-Upstream header), or None."""
    try:
        response = requests.get(url, timeout=2)
    except requests.RequestException:
        return None
    return response.headers.get("X-Upstream") if response.status_code == 200 else None


def _start_balancer(port: int, webs: dict[str, int], logs: Path, config: Config,
                    name: str = "lb") -> subprocess.Popen:
    """HAProxy on `port` in front of web-1 and web-2 (one web named twice: in front of it alone), from
    the cluster's own configuration, its edge check keyed as `config`'s webs sign (app/edge.py)."""
    servers = list(webs.values())
    addresses = {"LB_BIND": f"127.0.0.1:{port}", "LB_WEB_1": f"127.0.0.1:{servers[0]}",
                 "LB_WEB_2": f"127.0.0.1:{servers[-1]}"}
    edge = write_edge_files(config, create_app(config), logs / f"{name}-edge")
    with open(logs / f"{name}.log", "ab") as log_file:
        return subprocess.Popen(["haproxy", "-db", "-f", str(ROOT / "scripts" / "haproxy.cfg")],
                                env={**os.environ, **addresses, **edge}, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)


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
            metrics_dir = logs / f"prometheus-{name}"
            metrics_dir.mkdir()
            envs[name].update(WEB_PORT=str(web_ports[name]), WEB_METRICS_PORT=str(free_port()),
                              PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    processes = {name: start_process(name, envs[name], logs) for name in envs}
    stack = LiveStack(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", config, processes, logs, envs)
    try:
        for name, web_port in web_ports.items():
            _wait_http(f"http://127.0.0.1:{web_port}/healthz", processes[name])
        if CLUSTER:
            processes["lb"] = _start_balancer(port, web_ports, logs, config)
            seen: set[str] = set()
            wait_until(lambda: seen.add(upstream_of(f"{stack.base_url}/healthz")) or set(web_ports) <= seen,
                       f"the balancer did not reach both webs (see {logs / 'lb.log'})", every_s=0.2)
        yield stack
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes.values():
            stop_process(process)


@dataclass
class WebPair:
    """Two more web processes beside the stack's (one gunicorn worker each, on its database, Redis keys
    and topics), each on a port of its own, so a test knows which process serves each request. They
    trust one proxy: a test names its client's address in X-Forwarded-For (`as_address`), so what it
    counts per address is its own."""

    envs: list[dict]
    processes: list[subprocess.Popen]
    logs: Path

    def url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.envs[index]['WEB_PORT']}"

    def ws_url(self, index: int) -> str:
        return f"ws://127.0.0.1:{self.envs[index]['WEB_PORT']}"

    def kill(self, index: int) -> None:
        """SIGKILL the process (its gunicorn master and worker): nothing of it runs a `finally`."""
        os.killpg(self.processes[index].pid, signal.SIGKILL)
        self.processes[index].wait(WAIT_S)

    def restart(self, index: int) -> None:
        stop_process(self.processes[index])
        self.processes[index] = start_process(f"web-pair-{index}", self.envs[index], self.logs)
        _wait_http(f"{self.url(index)}/healthz", self.processes[index])


def as_address(address: str) -> dict[str, str]:
    """The header that makes a WebPair process take `address` for the client's."""
    return {"X-Forwarded-For": address}


_addresses = itertools.count(1)


def new_address() -> str:
    """A client address no other test uses (for a WebPair process, in X-Forwarded-For)."""
    n = next(_addresses)
    return f"198.51.{n // 250}.{n % 250 + 1}"


# Small limits, so a test reaches them with a handful of sockets, and a short lease, so a killed
# process's sockets stop counting soon.
WEB_PAIR_SETTINGS = {"WS_MAX_PER_ADDRESS": "3", "WS_MAX_PER_USER": "2", "WS_SLOT_LEASE_S": "1",
                     "WEB_TRUSTED_PROXIES": "1", "WEB_WORKERS": "1"}


@pytest.fixture(scope="session")
def web_pair(live_stack) -> Iterator[WebPair]:
    web = next(name for name in live_stack.envs if kind_of(name) == "web")
    envs = []
    for index in range(2):
        metrics_dir = live_stack.logs / f"prometheus-web-pair-{index}"
        metrics_dir.mkdir()
        envs.append({**live_stack.envs[web], **WEB_PAIR_SETTINGS, "WEB_PORT": str(free_port()),
                     "WEB_METRICS_PORT": str(free_port()), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    pair = WebPair(envs, [start_process(f"web-pair-{i}", env, live_stack.logs) for i, env in enumerate(envs)],
                   live_stack.logs)
    try:
        for index, process in enumerate(pair.processes):
            _wait_http(f"{pair.url(index)}/healthz", process)
        yield pair
    finally:
        for process in pair.processes:
            stop_process(process)


@pytest.fixture(scope="session")
def browser() -> Browser:
    """Debian's Chromium driven by Playwright; no browser is ever downloaded. Every assertion on a page
    waits for its state up to TEST_WAIT_S (Playwright's own default is 5 s: a busy machine can need
    longer to render what a test has already seen through the API)."""
    expect.set_options(timeout=WAIT_S * 1000)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
