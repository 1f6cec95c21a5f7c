"""What `make up` and `make up-cluster` give Prometheus to scrape (scripts/stack/monitoring.py), from their
settings, written and checked by `promtool check config` as a start does, in a directory of the test's
own (nothing starts). That this Prometheus really finds every target up: tests/e2e/test_prometheus.py."""
from __future__ import annotations

import pytest
import yaml

from app.core.config import describe
from scripts.stack import cluster as cluster_module
from scripts.stack import single as single_module
from scripts.stack.connect import JMX_RULES, connect_program
from scripts.stack.monitoring import ALERT_RULES, postgres_dsn
from scripts.stack.programs import StackError
from scripts.stack.single import check_ports
from scripts.stack.supervisor import MANUAL

JOBS = {"web", "relay", "worker", "ingest", "redis", "postgres"}  # the jobs the alert rules name


@pytest.fixture()
def stack_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(single_module, "STACK_DIR", tmp_path)
    monkeypatch.setattr(cluster_module, "CLUSTER_DIR", tmp_path / "cluster")
    for name, _default, _meaning in describe():  # every setting at its default, whatever this shell sets
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SECRET_KEY", "k" * 40)
    monkeypatch.setenv("OPS_PASSWORD", "p" * 20)
    return tmp_path


def targets(config_path) -> dict[str, list[str]]:
    config = yaml.safe_load(config_path.read_text())
    assert config["rule_files"] == [str(ALERT_RULES)]
    return {job["job_name"]: [t for group in job["static_configs"] for t in group["targets"]]
            for job in config["scrape_configs"]}


def test_make_up_scrapes_each_process_and_both_exporters_on_their_settings(stack_dir, monkeypatch):
    monkeypatch.setenv("INGEST_METRICS_PORT", "0")  # a process without metrics is not a target
    single = single_module.Single()
    programs = single.monitoring()
    assert sorted(programs) == sorted(single_module.MONITORING)
    assert "--web.listen-address=127.0.0.1:9190" in programs["prometheus"].command
    assert "-web.listen-address=127.0.0.1:9105" in programs["exporter-redis"].command
    assert programs["exporter-postgres"].env["DATA_SOURCE_NAME"] == \
        "postgresql://quiz:quiz@127.0.0.1:5433/quiz?sslmode=disable"
    found = targets(stack_dir / "monitoring" / "prometheus.yml")
    assert set(found) == JOBS
    assert found == {"web": ["127.0.0.1:9104"], "relay": ["127.0.0.1:9101"], "worker": ["127.0.0.1:9102"],
                     "ingest": [], "redis": ["redis://127.0.0.1:6380"], "postgres": ["127.0.0.1:9106"]}
    ports = single.ports()
    assert ports["prometheus"] == {9190: "PROMETHEUS_PORT"}
    assert ports["exporter-redis"] == {9105: "REDIS_EXPORTER_PORT"}
    assert ports["exporter-postgres"] == {9106: "POSTGRES_EXPORTER_PORT"}


def test_with_debezium_prometheus_scrapes_the_connect_workers_jmx_exporter(stack_dir, monkeypatch):
    monkeypatch.setenv("RELAY_MODE", "debezium")
    monkeypatch.setenv("CONNECT_METRICS_PORT", "9117")
    single = single_module.Single()
    single.monitoring()
    assert targets(stack_dir / "monitoring" / "prometheus.yml")["connect"] == ["127.0.0.1:9117"]
    assert single.ports()["connect"] == {8083: "CONNECT_PORT", 9117: "CONNECT_METRICS_PORT"}
    command = single.program("connect").command
    [agent] = [arg for arg in command if arg.startswith("-javaagent:")]
    assert agent.endswith(f"=127.0.0.1:9117:{JMX_RULES}") and "jmx_prometheus_javaagent" in agent
    assert "jmx_prometheus_javaagent" not in command[command.index("-cp") + 1]  # an agent, not a library


def test_make_ps_lists_a_running_connect_worker_whatever_the_shells_relay_mode(stack_dir, monkeypatch,
                                                                              capsys):
    """`RELAY_MODE=debezium make up`, then a plain `make ps`: the Connect worker is a row of its own."""
    monkeypatch.delenv("RELAY_MODE", raising=False)
    single = single_module.Single()
    listed: dict = {}
    monkeypatch.setattr(single_module, "ps_lines",
                        lambda supervisor, components: listed.update(components) or [])
    monkeypatch.setattr(single, "running", lambda name: name == "connect")
    monkeypatch.setattr("outbox_relay.debezium.connector_state", lambda config: "RUNNING")
    single.ps()
    assert listed["connect"] == {8083: "CONNECT_PORT", 9107: "CONNECT_METRICS_PORT"}
    assert "connector" in capsys.readouterr().out


def test_a_port_given_twice_is_named_by_its_setting(stack_dir, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_PORT", "9104")  # the web's metrics port
    with pytest.raises(StackError, match=r"port 9104 is configured twice \(PROMETHEUS_PORT\)"):
        check_ports(single_module.Single().ports(), [])


def test_the_cluster_scrapes_every_instance(stack_dir):
    cluster = cluster_module.Cluster()
    programs = {program.name: program for program in cluster.monitoring()}
    found = targets(stack_dir / "cluster" / "monitoring" / "prometheus.yml")
    assert set(found) == JOBS
    assert found["web"] == ["127.0.0.1:19107", "127.0.0.1:19108"]
    assert {job: len(found[job]) for job in ("relay", "worker", "ingest", "redis", "postgres")} == \
        {"relay": 2, "worker": 2, "ingest": 2, "redis": 6, "postgres": 1}
    assert "--web.listen-address=127.0.0.1:19109" in programs["prometheus"].command
    assert programs["exporter-postgres"].env["DATA_SOURCE_NAME"].startswith(
        "postgresql://quiz:quiz@127.0.0.1:15432/quiz_cluster?")  # the leader, through pg-lb
    check_ports(cluster.ports(), [])  # no port twice in the whole block
    assert cluster.environ()["PROMETHEUS_URL"] == "http://127.0.0.1:19109"  # the webs' dashboard reads it


def test_the_debezium_cluster_runs_two_distributed_connect_workers_scraped_by_its_prometheus(stack_dir,
                                                                                             monkeypatch):
    monkeypatch.setenv("RELAY_MODE", "debezium")
    cluster = cluster_module.Cluster()
    cluster.monitoring()
    assert targets(stack_dir / "cluster" / "monitoring" / "prometheus.yml")["connect"] == \
        ["127.0.0.1:19112", "127.0.0.1:19113"]
    ports = cluster.ports()
    assert ports["connect-1"] == {18083: "CLUSTER_CONNECT_PORT", 19112: "CLUSTER_METRICS_PORT"}
    check_ports(ports, [])
    (stack_dir / "cluster").mkdir(exist_ok=True)
    program = connect_program("connect-2", stack_dir / "cluster", MANUAL, cluster.connect_config("connect-2"),
                              None, cluster_module.CONNECT_GROUP)
    assert program.command[-2:] == ["org.apache.kafka.connect.cli.ConnectDistributed",
                                    str(stack_dir / "cluster" / "connect-2" / "worker.properties")]
    worker = (stack_dir / "cluster" / "connect-2" / "worker.properties").read_text()
    for line in ("group.id=livequiz.connect", "offset.storage.topic=livequiz.connect.offsets",
                 "config.storage.replication.factor=3", "listeners=http://127.0.0.1:18084",
                 "bootstrap.servers=127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"):
        assert line in worker.splitlines()


def test_a_sqlalchemy_url_becomes_a_libpq_one():
    assert postgres_dsn("postgresql+psycopg://a:b%40c@h:1/d?x=1") == "postgresql://a:b%40c@h:1/d?x=1"
