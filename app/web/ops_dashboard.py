"""The operators' dashboard: `GET /ops`, live charts of the whole system drawn from Prometheus.

The page's script asks this module for one panel at a time (`GET /ops/api/panels/<name>?minutes=N`);
the web asks Prometheus's HTTP API (PROMETHEUS_URL, on loopback by default) the panel's fixed
queries, so a browser never talks to Prometheus and never sends PromQL: the work of one request is
at most PANEL_QUERIES_MAX range queries of at most POINTS_MAX points each. Prometheus down, slow or
answering nonsense makes that panel say so (503), and nothing else: no other part of the service
asks Prometheus anything.

Operators only: every URL here asks for HTTP Basic credentials (user `ops`, OPS_PASSWORD); without
OPS_PASSWORD the dashboard does not exist (404). A wrong password counts against the address's login
budget (RATE_LOGIN_PER_ADDRESS), as a failed sign-in does. The charts are uPlot, from npm by the lock
and served from node_modules like GraphiQL (playground.py), never from a CDN.
"""
from __future__ import annotations

import hmac
import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from dataclasses import dataclass

from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    render_template,
    request,
    send_from_directory,
)
from werkzeug.exceptions import NotFound

from app.core.config import Config
from app.core.errors import Invalid, Unavailable
from app.web.api.core import error_body
from app.web.extensions import rate_limits
from app.web.playground import ASSET_MAX_AGE_S, NODE_MODULES
from app.web.ratelimits import limit

OPS_USER = "ops"
RANGES_MIN = (15, 60, 180, 720)  # the time ranges the page offers, in minutes
POINTS_MAX = 240  # per series: a chart's width in points, whatever the range
SERIES_MAX = 24  # per panel, shared by its queries (the latency panel's: one series per route and quantile)
PANEL_QUERIES_MAX = 3
VENDORED = {"uplot.js": ("uplot", "dist/uPlot.iife.min.js"), "uplot.css": ("uplot", "dist/uPlot.min.css")}


@dataclass(frozen=True)
class Query:
    promql: str  # `{w}` stands for the rate window
    legend: str  # a series' name: `{label}` stands for its value of that label


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    queries: tuple[Query, ...]


BUSIEST_ROUTES = 8  # the latency panel's routes: those of most requests at each step
_BY_BUSY_ROUTE = ("sum by (le, route) (rate(http_request_duration_seconds_bucket[{w}])) and on (route) "
                  f"topk({BUSIEST_ROUTES}, "
                  "sum by (route) (rate(http_request_duration_seconds_count[{w}])))")

def _hop_p99(histogram: str) -> str:
    return f"histogram_quantile(0.99, sum by (le, aggregate) (rate({histogram}_bucket[{{w}}])))"


# What an on-call engineer reads first. The job names are those of the scrape configuration
# (scripts/stack/monitoring.py), the metrics those the processes export (README, "Metrics").
PANELS = {
    "throughput": Panel("Answers and score writes", "per s", (
        Query("sum(rate(answers_accepted_total[{w}]))", "answers"),
        Query("sum(rate(score_writes_total[{w}]))", "score writes"),
    )),
    "latency": Panel(f"HTTP latency of the {BUSIEST_ROUTES} busiest routes, p50 and p99", "s", (
        Query(f"histogram_quantile(0.5, {_BY_BUSY_ROUTE})", "p50 {route}"),
        Query(f"histogram_quantile(0.99, {_BY_BUSY_ROUTE})", "p99 {route}"),
    )),
    "outbox": Panel("Outbox: age of the oldest unpublished event", "s", (
        Query("max(outbox_lag_seconds) or max(relay_outbox_lag_seconds)", "oldest unpublished"),
    )),
    # RELAY_MODE=debezium: Kafka Connect relays, and its worker's exporter counts the outbox rows Debezium
    # read from its slot (job `connect`); the relay process then publishes nothing.
    "relay": Panel("Relay: events published", "per s", (
        Query("sum by (instance) (rate(relay_events_published_total[{w}]))", "{instance}"),
        Query("sum by (instance) (rate(debezium_streaming_events_seen_total[{w}]))", "Debezium {instance}"),
    )),
    "consumer_lag": Panel("Consumer lag per group", "messages", (
        Query("job:consumer_lag_messages:sum", "{job}"),  # the alert rules' own recording rule
    )),
    "applied": Panel("Worker applies, ingest commits", "per s", (
        Query("sum by (instance) (rate(worker_events_applied_total[{w}]))", "worker {instance}"),
        Query("sum by (instance) (rate(ingest_scores_committed_total[{w}]))", "ingest {instance}"),
    )),
    "sockets": Panel("Open WebSockets", "sockets", (
        Query("sum by (instance) (ws_connections)", "{instance}"),
    )),
    "dead_letters": Panel("Dead letters", "per s", (
        Query("sum by (job, reason) (rate(worker_dead_lettered_total[{w}]))", "{job}: {reason}"),
        Query("sum by (job, reason) (rate(ingest_dead_lettered_total[{w}]))", "{job}: {reason}"),
    )),
    "rate_limits": Panel("Rate-limit refusals, and checks let through with Redis away", "per s", (
        Query("sum by (rule) (rate(rate_limited_total[{w}]))", "refused: {rule}"),
        Query("sum(rate(rate_limit_unavailable_total[{w}]))", "failing open"),
    )),
    # An event's journey, hop by hop (docs/operations.md, "An event's journey"): which hop was slow.
    "hops": Panel("An event's hops, p99 per aggregate", "s", (
        Query(_hop_p99("relay_commit_to_produced_seconds"), "commit → produced {aggregate}"),
        Query(_hop_p99("worker_produced_to_applied_seconds"), "produced → applied {aggregate}"),
        Query(_hop_p99("push_applied_to_pushed_seconds"), "applied → pushed {aggregate}"),
    )),
    "click_to_socket": Panel("Click to socket, p50 and p99 per aggregate", "s", (
        Query("histogram_quantile(0.5, sum by (le, aggregate) "
              "(rate(push_click_to_socket_seconds_bucket[{w}])))", "p50 {aggregate}"),
        Query(_hop_p99("push_click_to_socket_seconds"), "p99 {aggregate}"),
    )),
}
assert all(len(panel.queries) <= PANEL_QUERIES_MAX for panel in PANELS.values())

bp = Blueprint("ops_dashboard", __name__, url_prefix="/ops")


def _config() -> Config:
    return current_app.config["LIVEQUIZ"]


@bp.before_request
def operators_only():
    """404 while OPS_PASSWORD is unset; 401 asking for Basic credentials until they are `ops` and it."""
    password = _config().ops_password
    if not password:
        raise NotFound()
    address = limit("login_per_address")
    rate_limits().check(address)
    given = request.authorization
    ok = (given is not None and given.type == "basic"
          and hmac.compare_digest((given.username or "").encode(), OPS_USER.encode())
          & hmac.compare_digest((given.password or "").encode(), password.encode()))
    if not ok:
        if given is not None:
            rate_limits().hit(address)
        response = jsonify(error_body("unauthorized",
                                      "the operators' dashboard needs the ops user's password"))
        response.headers["WWW-Authenticate"] = 'Basic realm="LiveQuiz operations", charset="UTF-8"'
        response.headers["Cache-Control"] = "no-store"
        return response, 401
    return None


@bp.after_request
def never_cached(response):
    if request.endpoint != "ops_dashboard.asset":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("")
def dashboard():
    versions = {package: json.loads((NODE_MODULES / package / "package.json").read_text())["version"]
                for package, _ in VENDORED.values() if (NODE_MODULES / package / "package.json").is_file()}
    if len(versions) < len({package for package, _ in VENDORED.values()}):
        raise Unavailable("unavailable", "the dashboard's chart library is not installed (npm ci)")
    assets = {name: f"/ops/assets/{name}?v={versions[package]}" for name, (package, _) in VENDORED.items()}
    panels = [{"name": name, "title": panel.title, "unit": panel.unit} for name, panel in PANELS.items()]
    return render_template("ops.html", assets=assets, panels=panels, ranges=RANGES_MIN,
                           prometheus=_config().prometheus_base_url())


@bp.get("/assets/<name>")
def asset(name: str):
    if name not in VENDORED:
        abort(404)
    package, path = VENDORED[name]
    return send_from_directory(NODE_MODULES / package, path, max_age=ASSET_MAX_AGE_S)


def _minutes() -> int:
    text = request.args.get("minutes", "60")
    if not text.isdigit() or int(text) not in RANGES_MIN:
        raise Invalid("invalid_request", f"minutes must be one of {', '.join(map(str, RANGES_MIN))}")
    return int(text)


def ask_prometheus(path: str, params: dict[str, str]) -> dict:
    """The `data` of one answer of Prometheus's HTTP API; Unavailable when it does not give one in time."""
    config = _config()
    url = f"{config.prometheus_base_url()}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=config.prometheus_timeout_s) as response:
            body = json.loads(response.read(8 * 1024 * 1024))
        if body.get("status") != "success" or not isinstance(body.get("data"), dict):
            raise ValueError(body.get("error", "no data"))
        return body["data"]
    except urllib.error.HTTPError as exc:  # a 4xx/5xx of Prometheus: its own error text, for the operator
        try:
            reason = json.loads(exc.read(64 * 1024)).get("error", exc.reason)
        except ValueError:
            reason = exc.reason
        raise Unavailable("unavailable", f"Prometheus refused the query: {reason}") from None
    except (OSError, ValueError, AttributeError) as exc:
        raise Unavailable("unavailable", f"Prometheus did not answer ({type(exc).__name__})") from None


def _legend(template: str, labels: dict[str, str]) -> str:
    return template.format_map(defaultdict(str, labels)).strip() or template


@bp.get("/api/panels/<name>")
def panel_series(name: str):
    """One panel over the last `minutes`: `{"title", "unit", "times": [s...], "series": [{"name",
    "values": [float|null...]}]}`, every series on the same times (null where it has no sample)."""
    panel = PANELS.get(name)
    if panel is None:
        raise NotFound(f"no panel {name}")
    config, minutes = _config(), _minutes()
    step = max(config.prometheus_scrape_interval_s, math.ceil(minutes * 60 / POINTS_MAX))
    end = math.floor(time.time() / step) * step
    start = end - minutes * 60
    times = list(range(start, end + 1, step))
    # Grafana's $__rate_interval: four scrapes, or a step and one scrape, so every increase shows at some
    # step.
    window = f"{max(4 * config.prometheus_scrape_interval_s, step + config.prometheus_scrape_interval_s)}s"
    series = []
    for query in panel.queries:
        data = ask_prometheus("/api/v1/query_range", {
            "query": query.promql.replace("{w}", window),
            "start": str(start), "end": str(end), "step": str(step)})
        found = []
        for result in data.get("result", []):
            by_time = {int(float(t)): float(v) for t, v in result.get("values", [])}
            values = [by_time[t] if math.isfinite(by_time.get(t, math.nan)) else None for t in times]
            if any(value is not None for value in values):  # a quantile of no requests is NaN throughout
                found.append({"name": _legend(query.legend, result.get("metric", {})), "values": values})
        # Each query's share of the panel, to the series with the most samples.
        found.sort(key=lambda s: -sum(value is not None for value in s["values"]))
        series += found[:SERIES_MAX // len(panel.queries)]
    series.sort(key=lambda s: s["name"])
    return jsonify({"title": panel.title, "unit": panel.unit, "times": times, "series": series})


@bp.get("/api/targets")
def targets():
    """Every scrape target and whether its last scrape worked, and the alerts firing now."""
    up = ask_prometheus("/api/v1/query", {"query": "up"})
    alerts = ask_prometheus("/api/v1/query", {"query": 'ALERTS{alertstate="firing"}'})
    return jsonify({
        "targets": sorted(({"job": r["metric"].get("job", ""), "instance": r["metric"].get("instance", ""),
                            "up": r["value"][1] == "1"} for r in up.get("result", [])),
                          key=lambda t: (t["job"], t["instance"])),
        "alerts": sorted(({"alert": r["metric"].get("alertname", ""),
                           "severity": r["metric"].get("severity", ""),
                           "job": r["metric"].get("job", ""), "instance": r["metric"].get("instance", "")}
                          for r in alerts.get("result", [])), key=lambda a: (a["alert"], a["instance"])),
    })
