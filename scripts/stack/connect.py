"""Kafka Connect as a supervised program (RELAY_MODE=debezium): one standalone worker running Debezium's
PostgreSQL connector with its Outbox Event Router (outbox_relay/debezium.py), and the step that applies the
connector through Connect's REST API once the worker answers.

Standalone: the source offsets live in a file of the worker's directory (`connect.offsets`); Debezium's
position is also its replication slot's, so a worker started on an empty file resumes from the slot. The
worker writes to no topic of its own (no config, offset or status topics), only the connector's. A
standalone worker keeps no connector across a restart, so the stack's also gets the connector as a file
on its command line (`connector.properties`): one the supervisor starts again relays again by itself; the
REST call of `make up` then finds it applied (and updates it when the configuration changed).

Distributed (`make up-cluster`, `ConnectGroup`): two workers of one group on the cluster's brokers keep
the connector's configuration, its source offsets and the tasks' states in three topics of the group's
own (replication 3). The connector is applied once through either worker's REST API; it runs one task
on one of them, and when that worker dies the group gives the task to the other after
REBALANCE_DELAY_MS, which resumes from the offsets committed to the topic (and Debezium's slot):
at least once, like a standalone worker's restart.

With CONNECT_METRICS_PORT the worker runs Prometheus's JMX exporter as a java agent: /metrics on that port
serves what scripts/prometheus/connect-jmx.yml keeps of Connect's and Debezium's JMX metrics
(`CONNECT_METRICS`), which the stack's Prometheus scrapes as the job `connect`.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from app.core.config import Config
from outbox_relay import debezium
from scripts.stack.engines import log4j_config
from scripts.stack.programs import PRIORITY, StackError, wait_for
from scripts.stack.supervisor import ROOT, Policy, Program, Supervisor

CONNECT_LIB = ROOT / ".cache" / "connect" / "lib"
JMX_AGENT = "jmx_prometheus_javaagent-*.jar"
JMX_RULES = ROOT / "scripts" / "prometheus" / "connect-jmx.yml"
# What JMX_RULES keeps, as Prometheus scrapes it: series -> its labels (besides job and instance). The
# alert rules read these (tests/unit/test_alert_rules.py), and a live worker serves them (tests/debezium).
CONNECT_METRICS = {
    "debezium_streaming_connected": {"server"},
    "debezium_streaming_milliseconds_behind_source": {"server"},
    "debezium_streaming_milliseconds_since_last_event": {"server"},
    "debezium_streaming_events_seen_total": {"server"},
    "kafka_connect_connector_running_task_count": {"connector"},
    "kafka_connect_connector_failed_task_count": {"connector"},
    "kafka_connect_connector_total_task_count": {"connector"},
    "kafka_connect_source_record_poll_total": {"connector", "task"},
    "kafka_connect_source_record_write_total": {"connector", "task"},
    "kafka_connect_task_record_errors_total": {"connector", "task"},
    "kafka_connect_task_record_failures_total": {"connector", "task"},
}

LOG4J = log4j_config("the worker's start and the connector's task", [
    "org.apache.kafka.connect.cli", "org.apache.kafka.connect.runtime.Connect",
    "io.debezium.connector.postgresql.PostgresConnectorTask",
    "io.debezium.connector.postgresql.PostgresStreamingChangeEventSource"])


# How long a distributed group waits for a worker that left to come back before it gives the worker's task
# to another (Connect's default is 5 minutes, during which nothing is relayed).
REBALANCE_DELAY_MS = 5000


@dataclass(frozen=True)
class ConnectGroup:
    """The distributed workers of one group: `group` is the group id and its topics' prefix
    (`<group>.configs`, `.offsets`, `.status`), kept with `replication` copies."""

    group: str
    replication: int = 3

    def properties(self, config: Config) -> str:
        stores = (("config", "configs"), ("offset", "offsets"), ("status", "status"))
        topics = "".join(f"{kind}.storage.topic={self.group}.{name}\n"
                         f"{kind}.storage.replication.factor={self.replication}\n" for kind, name in stores)
        return (f"group.id={self.group}\n{topics}"
                f"rest.advertised.host.name=127.0.0.1\nrest.advertised.port={config.connect_port}\n"
                f"scheduled.rebalance.max.delay.ms={REBALANCE_DELAY_MS}\n")


def worker_properties(config: Config, home: Path, group: ConnectGroup | None = None) -> str:
    storage = (group.properties(config) if group is not None
               else f"offset.storage.file.filename={home / 'connect.offsets'}\n")
    return (
        "# Written by scripts/stack at every start; edits are overwritten.\n"
        f"bootstrap.servers={config.kafka_bootstrap_servers}\n"
        f"listeners=http://127.0.0.1:{config.connect_port}\n"
        f"{storage}"
        f"offset.flush.interval.ms={debezium.OFFSET_FLUSH_MS}\n"
        # Every plugin is on the classpath and has ServiceLoader manifests: no 20 s reflective scan.
        "plugin.discovery=service_load\n"
        "key.converter=org.apache.kafka.connect.storage.StringConverter\n"
        "value.converter=org.apache.kafka.connect.json.JsonConverter\n"
        "value.converter.schemas.enable=false\n"
        # The producer of every source task: acknowledged by every in-sync replica, in order per partition.
        "producer.acks=all\n"
        "producer.enable.idempotence=true\n"
        "producer.compression.type=lz4\n"
        "producer.linger.ms=2\n"
    )


def properties(values: dict[str, str]) -> str:
    """`values` as a Java properties file (a backslash is an escape there: regexes keep theirs)."""
    return "".join(f"{key}={value.replace(chr(92), chr(92) * 2)}\n" for key, value in values.items())


def connect_program(
    name: str, run_dir: Path, policy: Policy, config: Config, connector: dict[str, str] | None = None,
    group: ConnectGroup | None = None,
) -> Program:
    """A standalone Connect worker in `run_dir`/NAME on CONNECT_PORT, against KAFKA_BOOTSTRAP_SERVERS; with
    `connector` (outbox_relay.debezium.connector_config) it runs that connector from its start. With
    `group`, a distributed worker of that group instead (its connector applied through the REST API)."""
    if not (CONNECT_LIB / ".complete").exists():
        raise StackError("Kafka Connect jars missing (run: scripts/deps.sh connect)")
    if not shutil.which("java"):
        raise StackError("java is not installed (run: scripts/deps.sh)")
    home = run_dir / name
    home.mkdir(parents=True, exist_ok=True)
    props, log4j = home / "worker.properties", home / "log4j2.xml"
    props.write_text(worker_properties(config, home, group))
    log4j.write_text(LOG4J)
    files = [str(props)]
    if connector is not None and group is None:
        connector_file = home / "connector.properties"
        connector_file.write_text(properties({"name": debezium.connector_name(config), **connector}))
        connector_file.chmod(0o600)  # the database's password
        files.append(str(connector_file))
    heap = os.environ.get("CONNECT_HEAP_OPTS", "-Xms256m -Xmx768m").split()
    command = [
        "java",
        *heap,
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        "-Djava.net.preferIPv4Stack=true",
        f"-Dlog4j2.configurationFile={log4j}",
        *metrics_agent(config),
        "-cp",
        classpath(),
        "org.apache.kafka.connect.cli." + ("ConnectStandalone" if group is None else "ConnectDistributed"),
        *files,
    ]
    ports = {config.connect_port: "CONNECT_PORT"}
    if config.connect_metrics_port:
        ports[config.connect_metrics_port] = "CONNECT_METRICS_PORT"
    return Program(name, command, policy, stop_wait_s=30, priority=PRIORITY["connect"], ports=ports)


def classpath() -> str:
    """Every jar of CONNECT_LIB but the JMX exporter's agent (a java agent, loaded as one)."""
    agents = set(CONNECT_LIB.glob(JMX_AGENT))
    return ":".join(str(jar) for jar in sorted(CONNECT_LIB.glob("*.jar")) if jar not in agents)


def metrics_agent(config: Config) -> list[str]:
    """The java option that serves the worker's metrics on CONNECT_METRICS_PORT (none when it is 0)."""
    if not config.connect_metrics_port:
        return []
    agents = sorted(CONNECT_LIB.glob(JMX_AGENT))
    if not agents:
        raise StackError("the JMX exporter agent is not among the Kafka Connect jars "
                         "(run: scripts/deps.sh connect)")
    return [f"-javaagent:{agents[-1]}={config.metrics_host}:{config.connect_metrics_port}:{JMX_RULES}"]


def apply_outbox_connector(
    supervisor: Supervisor, name: str, config: Config, timeout_s: float = 120, *, from_file: bool = False,
    **options: str,
) -> None:
    """Once the worker `name` answers, make the outbox connector for `config` the one it runs, and wait
    until it and its task run; `options` go to `debezium.connector_config`. A PUT makes a standalone
    worker stop and start its connector again, and stops the worker outright when it comes while the
    worker is creating it from its file: so a worker started with the connector's file (`from_file`) is
    first waited for until it has it, and the configuration is sent only when it differs from the one
    running (a worker of an earlier `make up`, a changed configuration)."""
    from cache_worker.process import aggregate_types

    wait_for(lambda: debezium.connect_answers(config), f"Kafka Connect on port {config.connect_port}",
             supervisor, [name], timeout_s)
    connector = debezium.connector_config(config, aggregate_types(), **options)
    if from_file:
        wait_for(lambda: debezium.applied_config(config) is not None, "the connector of the worker's file",
                 supervisor, [name], timeout_s)
    if debezium.applied_config(config) != {"name": debezium.connector_name(config), **connector}:
        debezium.apply_connector(config, connector)
    try:
        debezium.wait_running(config, timeout_s)
    except RuntimeError as exc:
        raise StackError(f"{exc}; {supervisor.run_dir / name}.log ends:\n"
                         f"{supervisor.tail(supervisor.run_dir / f'{name}.log')}") from None
