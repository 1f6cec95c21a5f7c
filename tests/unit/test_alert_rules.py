"""The alert rules (scripts/prometheus/alerts.yml): `promtool check rules` passes, their promtool unit tests
(tests/unit/alert_rules_test.yml) pass, each alert has a case that fires and a case that must not, and
a runbook in docs/operations.md. A rule on a metric nobody exposes never fires, and nothing else would
say so: the series the unit tests feed the rules are held to what the processes' code and the Debian
exporters expose (names, `_total` suffixes, labels, routes), and every metric a rule reads is fed by a
case where it fires.

promtool comes with Debian's `prometheus` package (`scripts/deps.sh`); without it these tests fail,
never skip."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from app import create_app
from app.core import metrics as web_metrics
from cache_worker.worker import WorkerMetrics
from outbox_relay.metrics import RelayMetrics
from score_ingest.ingest import IngestMetrics
from scripts.stack.connect import CONNECT_METRICS

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "scripts" / "prometheus" / "alerts.yml"
UNIT_TESTS = ROOT / "tests" / "unit" / "alert_rules_test.yml"
RUNBOOKS = ROOT / "docs" / "operations.md"

# The exporters' metrics the rules read, with their labels (besides job and instance): Debian 12's
# prometheus-redis-exporter 1.45 (exporter/exporter.go: INFO's used_memory and maxmemory, and `up`)
# and prometheus-postgres-exporter 0.11 (its default pg_replication_slots query, with the `server`
# label it puts on every default metric; pg_up), and what Kafka Connect's JMX exporter agent keeps
# (scripts/prometheus/connect-jmx.yml; tests/debezium scrapes a live worker for them).
EXPORTERS = {
    "connect": CONNECT_METRICS,
    "redis": {"redis_up": set(), "redis_memory_used_bytes": set(), "redis_memory_max_bytes": set()},
    "postgres": {"pg_up": set(), "pg_replication_slots_pg_wal_lsn_diff": {"slot_name", "database", "server"}},
}
SCRAPE_LABELS = {"job", "instance"}
PROMQL_WORDS = {"and", "or", "unless", "offset", "bool", "inf", "nan"}


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        ci = os.environ.get("CI", "").lower() == "true"
        pytest.fail("promtool is not installed: `scripts/deps.sh` installs it (Debian package "
                    "`prometheus`)" + (" [CI]" if ci else ""), pytrace=False)
    return promtool


def _rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def _alerts() -> dict[str, dict]:
    return {rule["alert"]: rule for rule in _rules() if "alert" in rule}


def _cases() -> list[dict]:
    return yaml.safe_load(UNIT_TESTS.read_text())["tests"]


def _series(text: str) -> tuple[str, dict[str, str]]:
    """`name{a="x", b="y"}` -> (name, labels)."""
    match = re.fullmatch(r"\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*(?:\{(.*)\})?\s*", text)
    assert match, f"cannot read the series {text!r}"
    return match[1], dict(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"', match[2] or ""))


def _metric_names(expr: str) -> set[str]:
    """The metric (and recorded) names a PromQL expression reads: what is left once strings, label
    matchers, ranges, offsets and label lists are removed, minus functions and keywords."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\boffset\s+\w+", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if expr[match.end():].lstrip().startswith("(") or match[0].lower() in PROMQL_WORDS:
            continue  # a function or an aggregation
        names.add(match[0])
    return names


def _exposed(source) -> dict[str, set[str]]:
    """The series names a process's metrics are scraped as, with their labels (prometheus_client adds
    `_total` to a counter, `_bucket`/`_count`/`_sum` to a histogram)."""
    exposed = {}
    for metric in vars(source).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        labels = set(metric._labelnames)
        if metric._type == "counter":
            exposed[metric._name + "_total"] = labels
        elif metric._type == "histogram":
            exposed.update({metric._name + "_bucket": labels | {"le"}, metric._name + "_count": labels,
                            metric._name + "_sum": labels})
        else:
            exposed[metric._name] = labels
    return exposed


def _exposed_by_job() -> dict[str, dict[str, set[str]]]:
    return {"web": _exposed(web_metrics), "relay": _exposed(RelayMetrics()),
            "worker": _exposed(WorkerMetrics()), "ingest": _exposed(IngestMetrics()), **EXPORTERS}


def test_promtool_checks_the_rules():
    result = subprocess.run([_promtool(), "check", "rules", str(RULES)], check=False, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_pass_their_promtool_unit_tests():
    result = subprocess.run([_promtool(), "test", "rules", str(UNIT_TESTS)], check=False, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_case_that_fires_and_one_that_must_not():
    fires, quiet = set(), set()
    for case in _cases():
        by_alert: dict[str, list[bool]] = {}
        for check in case["alert_rule_test"]:
            by_alert.setdefault(check["alertname"], []).append(bool(check.get("exp_alerts")))
        for alert, fired in by_alert.items():
            (fires if any(fired) else quiet).add(alert)
    alerts = set(_alerts())
    assert alerts - fires == set(), "alerts without a case where they fire"
    assert alerts - quiet == set(), "alerts without a case where they must not fire"
    assert (fires | quiet) - alerts == set(), "cases of alerts that do not exist"


def test_every_alert_has_its_runbook():
    headings = re.findall(r"^### (\w+)$", RUNBOOKS.read_text(), flags=re.MULTILINE)
    alerts = _alerts()
    assert sorted(headings) == sorted(alerts), "one runbook section per alert, named after it"
    for name, rule in alerts.items():
        assert rule["annotations"]["runbook"] == f"docs/operations.md#{name.lower()}"
        assert rule["annotations"].get("summary") and rule["annotations"].get("description"), name
        assert rule["labels"]["severity"] in ("critical", "warning"), name


def test_the_series_fed_to_the_rules_are_the_ones_the_processes_expose():
    exposed = _exposed_by_job()
    wrong = []
    for case in _cases():
        for item in case["input_series"]:
            name, labels = _series(item["series"])
            job = labels.get("job")
            if name == "up" and set(labels) == SCRAPE_LABELS:
                continue
            if job not in exposed or name not in exposed[job]:
                wrong.append(f"{item['series']}: job {job} exposes no {name}")
            elif not set(labels) - SCRAPE_LABELS <= exposed[job][name] or not SCRAPE_LABELS <= set(labels):
                wrong.append(f"{item['series']}: {name} has the labels {sorted(exposed[job][name])}, "
                             "and job and instance")
    assert wrong == []


def test_the_routes_fed_to_the_rules_are_routes_the_web_serves():
    served = {(method, rule.rule) for rule in create_app().url_map.iter_rules() for method in rule.methods}
    routes = set()
    for case in _cases():
        for item in case["input_series"]:
            _, labels = _series(item["series"])
            if "route" in labels:
                routes.add((labels["method"], labels["route"]))
    assert ("POST", "/api/v1/sessions/<session_id>/answers") in routes
    assert routes - served == set()


def test_every_metric_a_rule_reads_is_exposed_and_fed_where_the_rule_fires():
    recorded = {rule["record"]: _metric_names(rule["expr"]) for rule in _rules() if "record" in rule}
    known = {name for job in _exposed_by_job().values() for name in job} | {"up"} | set(recorded)
    fed: dict[str, set[str]] = {}
    for case in _cases():
        names = {_series(item["series"])[0] for item in case["input_series"]}
        for check in case["alert_rule_test"]:
            if check.get("exp_alerts"):
                fed.setdefault(check["alertname"], set()).update(names)
    for name, rule in _alerts().items():
        reads = _metric_names(rule["expr"])
        assert reads and reads <= known, f"{name} reads {sorted(reads - known)}, which nothing exposes"
        for record in reads & set(recorded):
            reads = (reads - {record}) | recorded[record]
        unfed = reads - fed.get(name, set())
        assert unfed == set(), f"{name}: no case where it fires feeds {sorted(unfed)}"
