"""Prometheus and Debian's two exporters as supervised programs: `make up`'s and the cluster's.

Prometheus (Debian's `prometheus`) scrapes every process's metrics port by job (`web`: each gunicorn
master, which serves all its workers' metrics; `relay`, `worker`, `ingest`; `connect`, each Kafka Connect
worker's JMX exporter agent, when RELAY_MODE=debezium runs one), `redis` through
prometheus-redis-exporter and `postgres` through prometheus-postgres-exporter, and evaluates the alert
rules of scripts/prometheus/alerts.yml (docs/operations.md). The job names are the ones the rules
name. Kafka's consumer lag is the consumers' own gauges (`worker_consumer_lag`, `ingest_consumer_lag`):
Debian has no Kafka exporter.

The Redis exporter is scraped the multi-target way (`/scrape?target=redis://...`, one target per Redis
node), so one exporter serves the single Redis and the cluster's six alike, each its own `instance`.
Everything listens on 127.0.0.1; the configuration is written at every start, so a port moved by its
setting is scraped where it now is.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import yaml

from scripts.stack.programs import PRIORITY, StackError, kind_of, wait_http
from scripts.stack.supervisor import ROOT, Policy, Program, Supervisor

ALERT_RULES = ROOT / "scripts" / "prometheus" / "alerts.yml"
# The jobs of the app processes, in the order `make ps` lists them.
APP_JOBS = ("web", "relay", "worker", "ingest")
# Kafka Connect's workers (RELAY_MODE=debezium), scraped only where a stack runs them.
CONNECT_JOB = "connect"
# The programs of this module, as a stack names them (its metrics ports' block, in this order).
MONITORING = ("prometheus", "exporter-redis", "exporter-postgres")


def scrape_config(interval_s: int, apps: dict[str, list[int]], redis_nodes: list[str], redis_exporter: int,
                  postgres_exporter: int) -> dict:
    """Prometheus's configuration: each app job's metrics ports on 127.0.0.1 (`apps`: job -> ports, a 0
    is a process without metrics and left out), the Redis nodes (`host:port`) through the exporter on
    `redis_exporter`, PostgreSQL through the exporter on `postgres_exporter`, and the alert rules."""
    jobs = [
        {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}" for port in ports if port]}]}
        for job, ports in apps.items()
    ]
    jobs.append(
        {
            "job_name": "redis",
            "metrics_path": "/scrape",
            "static_configs": [{"targets": [f"redis://{node}" for node in redis_nodes]}],
            # The node is the target the exporter is asked about, and the instance; the exporter is the
            # address.
            "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": f"127.0.0.1:{redis_exporter}"},
            ],
        }
    )
    jobs.append({"job_name": "postgres", "static_configs": [{"targets": [f"127.0.0.1:{postgres_exporter}"]}]})
    return {
        "global": {"scrape_interval": f"{interval_s}s", "evaluation_interval": f"{interval_s}s"},
        "rule_files": [str(ALERT_RULES)],
        "scrape_configs": jobs,
    }


def prometheus(
    run_dir: Path, port: int, config: dict, policy: Policy, setting: str = "PROMETHEUS_PORT"
) -> Program:
    """Prometheus on 127.0.0.1:`port` with `config` (scrape_config), its data in run_dir/monitoring/data
    (not run_dir/prometheus*, the webs' metrics files, now and in older stacks); the configuration is
    checked by promtool first, so a bad one stops the start with its reason."""
    if not shutil.which("prometheus"):
        raise StackError("prometheus is not installed (run: scripts/deps.sh)")
    home = run_dir / "monitoring"
    (home / "data").mkdir(parents=True, exist_ok=True)
    path = home / "prometheus.yml"
    path.write_text("# Written by scripts/stack at every start; edits are overwritten.\n"
                    + yaml.safe_dump(config))
    check = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True,
                           check=False)
    if check.returncode:
        raise StackError(f"promtool check config {path} failed: {check.stdout}{check.stderr}")
    return Program(
        "prometheus",
        [
            "prometheus",
            f"--config.file={path}",
            f"--storage.tsdb.path={home / 'data'}",
            "--storage.tsdb.retention.time=15d",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        policy,
        stop_wait_s=30,
        priority=PRIORITY["prometheus"],
        ports={port: setting},
    )


def redis_exporter(port: int, policy: Policy, setting: str = "REDIS_EXPORTER_PORT") -> Program:
    """prometheus-redis-exporter on 127.0.0.1:`port`, asked about one node per scrape (/scrape?target=)."""
    if not shutil.which("prometheus-redis-exporter"):
        raise StackError("prometheus-redis-exporter is not installed (run: scripts/deps.sh)")
    return Program(
        "exporter-redis",
        ["prometheus-redis-exporter", f"-web.listen-address=127.0.0.1:{port}", "-redis.addr="],
        policy,
        priority=PRIORITY["exporter"],
        ports={port: setting},
    )


def postgres_dsn(database_url: str) -> str:
    """The libpq URL of a SQLAlchemy one (`postgresql+psycopg://...` -> `postgresql://...`)."""
    parts = urlsplit(database_url)
    return urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, ""))


def postgres_exporter(
    port: int, database_url: str, policy: Policy, setting: str = "POSTGRES_EXPORTER_PORT"
) -> Program:
    """prometheus-postgres-exporter on 127.0.0.1:`port`, connected as the app's role (a pg_monitor member:
    scripts/stack/postgres.py) to `database_url`'s database."""
    if not shutil.which("prometheus-postgres-exporter"):
        raise StackError("prometheus-postgres-exporter is not installed (run: scripts/deps.sh)")
    dsn = postgres_dsn(database_url)
    dsn += ("&" if "?" in dsn else "?") + "sslmode=disable"
    return Program(
        "exporter-postgres",
        ["prometheus-postgres-exporter", f"--web.listen-address=127.0.0.1:{port}"],
        policy,
        {"DATA_SOURCE_NAME": dsn},
        priority=PRIORITY["exporter"],
        ports={port: setting},
    )


def monitoring_programs(
    run_dir: Path,
    policy: Policy,
    ports: dict[str, dict[int, str]],
    *,
    interval_s: int,
    redis_nodes: list[str],
    database_url: str,
) -> list[Program]:
    """The exporters and the Prometheus that scrapes them and the stack's app processes, from the stack's
    `ports` (component -> {port: setting}, as `make ps` lists them): "prometheus", "exporter-redis" and
    "exporter-postgres" have one port each; an app process (web-2, relay...) is scraped on its port whose
    setting names a metrics port, if it has one."""
    apps = {
        job: [port for name, own in ports.items() if kind_of(name) == job
              for port, setting in own.items() if setting.endswith("METRICS_PORT")]
        for job in (*APP_JOBS, CONNECT_JOB)
    }
    if not apps[CONNECT_JOB]:
        del apps[CONNECT_JOB]
    [(prometheus_port, setting)] = ports["prometheus"].items()
    [(redis_port, redis_setting)] = ports["exporter-redis"].items()
    [(postgres_port, postgres_setting)] = ports["exporter-postgres"].items()
    config = scrape_config(interval_s, apps, redis_nodes, redis_port, postgres_port)
    return [
        redis_exporter(redis_port, policy, redis_setting),
        postgres_exporter(postgres_port, database_url, policy, postgres_setting),
        prometheus(run_dir, prometheus_port, config, policy, setting),
    ]


def prometheus_ready(supervisor: Supervisor, port: int) -> None:
    wait_http(supervisor, "prometheus", f"http://127.0.0.1:{port}/-/ready", timeout_s=60)
