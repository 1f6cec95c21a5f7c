"""The stack's Prometheus, as `make up` and the cluster run it (scripts/stack/monitoring.py), on the live
stack: it scrapes every process (each web's gunicorn master, each relay, worker and ingest, and with
RELAY_MODE=debezium each Kafka Connect worker's exporter) and both exporters (every Redis node,
PostgreSQL) and finds each one up, with the alert rules loaded; and the operators' dashboard at /ops shows
what the system really did, in Chromium (a screenshot lands in
tests/artifacts/browser/ops-dashboard.png, git-ignored). `make up`'s own start of them (scripts/stack/
single.py) runs here too, in a directory and on ports of its own, never on the shared stack's.

The live stack runs each process with a metrics port of its own (tests/live_stack.py): this module
gives each web the dashboard's password and this Prometheus, which they keep for the rest of the session.
Prometheus scrapes every second here, so the test waits for seconds, not minutes.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import psutil
import pytest
import requests
from playwright.sync_api import Browser, expect

from scripts.stack import single as single_module
from scripts.stack.monitoring import (
    APP_JOBS,
    CONNECT_JOB,
    MONITORING,
    monitoring_programs,
    prometheus_ready,
)
from scripts.stack.programs import kind_of
from scripts.stack.supervisor import MANUAL
from tests.e2e.accessibility import assert_accessible, serve_axe
from tests.e2e.test_browser import ARTIFACTS, WAIT_MS
from tests.e2e.test_metrics import Round
from tests.helpers import Api, HttpClient, free_port, single_node, wait_until

PASSWORD = "ops-" + uuid.uuid4().hex


@dataclass
class Watched:
    stack: object
    prometheus: str  # its base URL
    expected: dict[str, int]  # job -> how many targets
    ports: dict[str, dict[int, str]]  # component -> {port: setting}, as a stack's

    def query(self, promql: str) -> list[dict]:
        body = requests.get(f"{self.prometheus}/api/v1/query", params={"query": promql}, timeout=10).json()
        assert body["status"] == "success", body
        return body["data"]["result"]

    def panel(self, name: str) -> dict:
        response = requests.get(f"{self.stack.base_url}/ops/api/panels/{name}", params={"minutes": 15},
                                auth=("ops", PASSWORD), timeout=30)
        assert response.status_code == 200, response.text
        return response.json()


def redis_nodes(config) -> list[str]:
    if config.redis_cluster_nodes:
        return [node.strip() for node in config.redis_cluster_nodes.split(",") if node.strip()]
    url = urlsplit(config.redis_url)
    return [f"{url.hostname}:{url.port or 6379}"]


@pytest.fixture(scope="module")
def watched(live_stack):
    config, supervisor = live_stack.config, live_stack.stack.supervisor
    ports = {name: {free_port(): name} for name in MONITORING}  # component -> {port: setting}, as a stack's
    prometheus = f"http://127.0.0.1:{next(iter(ports['prometheus']))}"
    webs = [name for name in live_stack.envs if kind_of(name) == "web"]
    live_stack.restart_together(webs, OPS_PASSWORD=PASSWORD, PROMETHEUS_URL=prometheus,
                                PROMETHEUS_SCRAPE_INTERVAL_S="1")
    for name, env in live_stack.envs.items():
        kind = kind_of(name)
        if kind == "web":
            ports[name] = {int(env["WEB_METRICS_PORT"]): "WEB_METRICS_PORT"}
            continue
        setting = f"{kind.upper()}_METRICS_PORT"
        if env.get(setting, "0") == "0":
            live_stack.restart(name, **{setting: str(free_port())})
        ports[name] = {int(live_stack.envs[name][setting]): setting}
    for name, own in live_stack.connect.items():  # RELAY_MODE=debezium: each Connect worker's exporter
        ports[name] = {own.connect_metrics_port: "CONNECT_METRICS_PORT"}
    nodes = redis_nodes(config)
    programs = monitoring_programs(live_stack.logs, MANUAL, ports, interval_s=1, redis_nodes=nodes,
                                   database_url=config.database_url)
    supervisor.define(*programs)
    try:
        for program in programs:
            supervisor.start(program.name, wait=False)
        prometheus_ready(supervisor, next(iter(ports["prometheus"])))
        expected = {job: sum(kind_of(name) == job for name in live_stack.envs) for job in APP_JOBS}
        if live_stack.connect:
            expected[CONNECT_JOB] = len(live_stack.connect)
        expected |= {"redis": len(nodes), "postgres": 1}
        yield Watched(live_stack, prometheus, expected, ports)
    finally:
        for name in MONITORING:
            supervisor.stop(name)


def wait_all_up(watched: Watched) -> None:
    def all_up() -> bool:
        targets = requests.get(f"{watched.prometheus}/api/v1/targets", timeout=10).json()
        found = targets["data"]["activeTargets"]
        by_job = {job: sum(1 for t in found if t["labels"]["job"] == job) for job in watched.expected}
        return by_job == watched.expected and len(found) == sum(watched.expected.values()) \
            and all(t["health"] == "up" for t in found)

    wait_until(all_up, f"not every target of {watched.expected} came up ({watched.prometheus}/targets)",
               every_s=0.5)


def test_prometheus_scrapes_every_process_and_both_exporters_and_finds_them_up(watched):
    wait_all_up(watched)
    # Up as a scrape, and connected: each exporter reached its server.
    assert [r["value"][1] for r in watched.query("redis_up")] == ["1"] * watched.expected["redis"]
    assert [r["value"][1] for r in watched.query("pg_up")] == ["1"]
    # What the alert rules read of the exporters is scraped (the live relay reads a slot in wal mode).
    for series in ("redis_memory_used_bytes", "redis_memory_max_bytes"):
        assert len(watched.query(series)) == watched.expected["redis"], series
    if watched.stack.config.relay_mode == "wal":
        slots = watched.query("pg_replication_slots_pg_wal_lsn_diff")
        database = urlsplit(watched.stack.config.database_url).path[1:]
        assert any(r["metric"]["database"] == database for r in slots)
    # The consumers' own lag gauges are what consumer lag is made of (Debian has no Kafka exporter).
    wait_until(lambda: watched.query("worker_consumer_lag"), "no worker_consumer_lag scraped", every_s=0.5)
    groups = requests.get(f"{watched.prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    alerts = {rule["name"] for group in groups for rule in group["rules"] if rule["type"] == "alerting"}
    assert {"OutboxNotDraining", "ConsumerLagGrowing", "ProcessDown", "RedisMemoryNearLimit"} <= alerts
    assert all(group["rules"] and all(rule["health"] != "err" for rule in group["rules"]) for group in groups)


def latest(panel: dict, series: str) -> float | None:
    for entry in panel["series"]:
        if entry["name"] == series:
            values = [value for value in entry["values"] if value is not None]
            return values[-1] if values else None
    return None


def peak(panel: dict, series: str | None = None) -> float:
    """The highest value of `series` (of any series: None) in the panel."""
    return max((value for entry in panel["series"] if series in (None, entry["name"])
                for value in entry["values"] if value is not None), default=0.0)


def test_the_dashboard_shows_what_the_system_did(watched, browser: Browser):
    stack = watched.stack
    wait_all_up(watched)
    game = Round(stack.base_url, players=6)  # answers among the busiest routes
    game.play_question(0)
    http = Api(HttpClient(stack.base_url))
    owner = http.host()
    board_id = "ops-" + uuid.uuid4().hex[:10]
    http.post("/api/v1/leaderboards", {"id": board_id, "name": "Ops", "sort_order": "desc",
                                       "update_mode": "best", "reset_period": "never"},
              token=owner.token, expect=201)

    # Each web directly, not through the balancer (which spreads requests): every web's series of score
    # writes starts at its own first write.
    webs = [Api(HttpClient(f"http://127.0.0.1:{env['WEB_PORT']}"))
            for name, env in stack.envs.items() if kind_of(name) == "web"]

    def write_scores(player: str) -> None:
        for web in webs:
            web.post("/api/v1/scores", {"leaderboard_id": board_id, "player_id": player, "score": 10},
                     token=owner.token, expect=201)

    # A labelled series starts at its first request's count, which no rate can see: once Prometheus has
    # every web's score writes and the answers' route, the second round moves them.
    write_scores("p1")
    answers = 'http_request_duration_seconds_count{route="/api/v1/sessions/<session_id>/answers"}'

    def scraped() -> bool:
        writers = {series["metric"]["instance"] for series in watched.query("score_writes_total")}
        return len(writers) == len(webs) and bool(watched.query(answers))

    wait_until(scraped, "the first score writes and answers were never scraped", every_s=0.5)
    write_scores("p2")
    game.play_question(1)

    # The web's answers went through Prometheus to the panel: rates above zero, at some step.
    wait_until(lambda: peak(watched.panel("throughput"), "answers") > 0,
               "the answers never showed on the panel", every_s=0.5)
    wait_until(lambda: peak(watched.panel("throughput"), "score writes") > 0,
               "the score write never showed on the panel", every_s=0.5)
    wait_until(lambda: peak(watched.panel("relay")) > 0, "no relay rate on the panel", every_s=0.5)
    wait_until(lambda: latest(watched.panel("consumer_lag"), "worker") is not None,
               "no worker lag on the panel", every_s=0.5)
    latency = watched.panel("latency")
    assert peak(latency, "p99 /api/v1/sessions/<session_id>/answers") > 0, [
        s["name"] for s in latency["series"]]
    assert latest(watched.panel("outbox"), "oldest unpublished") is not None

    context = browser.new_context(base_url=stack.base_url, viewport={"width": 1400, "height": 900},
                                  http_credentials={"username": "ops", "password": PASSWORD})
    errors: list[str] = []
    try:
        serve_axe(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.goto("/ops?minutes=15")
        assert page.locator("#range").input_value() == "15"
        targets = sum(watched.expected.values())
        # Playwright's own checks: the page's CSP (no eval) refuses wait_for_function's strings.
        expect(page.get_by_test_id("targets")).to_have_attribute("data-up", str(targets), timeout=WAIT_MS)
        expect(page.get_by_test_id("targets")).to_have_attribute("data-down", "0")
        for name in ("throughput", "latency", "outbox", "relay", "consumer_lag", "applied", "sockets"):
            panel = page.get_by_test_id(f"panel-{name}")
            expect(panel).to_have_attribute("data-samples", re.compile(r"^[1-9][0-9]*$"), timeout=WAIT_MS)
            expect(panel.locator("canvas")).to_have_count(1)
        expect(page.locator("[data-status-of=throughput]")).to_contain_text("answers")
        expect(page.get_by_test_id("updated")).to_contain_text("updated", timeout=WAIT_MS)
        assert_accessible(page, "/ops")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "ops-dashboard.png"), full_page=True, animations="disabled")
        assert errors == [], errors  # script errors and CSP violations alike
    finally:
        context.close()


@single_node("`make up` runs one of each process")
def test_make_up_starts_this_prometheus_and_make_ps_lists_it(watched, tmp_path, monkeypatch, capsys):
    """scripts/stack/single.py's own start of Prometheus and its exporters, as `make up` runs it, in a run
    directory of the test's own, on ports of its own, with the live stack's processes in `make up`'s
    settings: every target up, and `make ps` lists the three."""
    config, envs = watched.stack.config, watched.stack.envs
    monkeypatch.setattr(single_module, "STACK_DIR", tmp_path)
    settings = {"SECRET_KEY": "k" * 40, "OPS_PASSWORD": PASSWORD, "DATABASE_URL": config.database_url,
                "REDIS_URL": config.redis_url, "REDIS_PORT": str(urlsplit(config.redis_url).port),
                "PROMETHEUS_SCRAPE_INTERVAL_S": "1", "WEB_METRICS_PORT": envs["web"]["WEB_METRICS_PORT"],
                "PROMETHEUS_PORT": str(free_port()), "REDIS_EXPORTER_PORT": str(free_port()),
                "POSTGRES_EXPORTER_PORT": str(free_port())}
    for kind in ("relay", "worker", "ingest"):
        setting = f"{kind.upper()}_METRICS_PORT"
        settings[setting] = envs[kind][setting]
    if watched.stack.connect:  # RELAY_MODE=debezium: `make up` scrapes its Connect worker's exporter too
        connect = watched.stack.connect["connect"]
        settings |= {"CONNECT_PORT": str(connect.connect_port),
                     "CONNECT_METRICS_PORT": str(connect.connect_metrics_port)}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    single = single_module.Single()
    try:
        single.start(MONITORING)
        prometheus_ready(single.supervisor, int(settings["PROMETHEUS_PORT"]))
        wait_all_up(Watched(watched.stack, f"http://127.0.0.1:{settings['PROMETHEUS_PORT']}",
                            watched.expected, {}))
        capsys.readouterr()
        single.ps()
        listed = {line.split()[0]: line.split()[2] for line in capsys.readouterr().out.splitlines()[1:]}
        assert {name: listed[name] for name in MONITORING} == dict.fromkeys(MONITORING, "RUNNING")
    finally:
        single.supervisor.shutdown()


def listening(pid: int, port: int) -> list[str]:
    """The addresses process `pid` listens on at `port`."""
    return [c.laddr.ip for c in psutil.Process(pid).net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port]


@single_node("one process of each kind is moved and moved back")
def test_metrics_host_moves_every_metrics_port_and_loopback_is_the_default(watched):
    """METRICS_HOST is where a Prometheus on another host reaches the metrics ports (the web master's, the
    relay's, the consumers'): 127.0.0.2 stands for that address here."""
    stack = watched.stack
    settings = {"web": "WEB_METRICS_PORT", "relay": "RELAY_METRICS_PORT", "worker": "WORKER_METRICS_PORT"}
    try:
        for name, setting in settings.items():
            port = int(stack.envs[name][setting])
            assert listening(stack.processes[name].pid, port) == ["127.0.0.1"], name
            stack.restart(name, METRICS_HOST="127.0.0.2")
            wait_until(lambda name=name, port=port:
                       listening(stack.processes[name].pid, port) == ["127.0.0.2"],
                       f"{name} did not serve its metrics on 127.0.0.2", every_s=0.2)
            assert requests.get(f"http://127.0.0.2:{port}/metrics", timeout=10).status_code == 200
    finally:
        for name in settings:
            if stack.envs[name].get("METRICS_HOST") != "127.0.0.1":
                stack.restart(name, METRICS_HOST="127.0.0.1")
