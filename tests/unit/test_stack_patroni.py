"""The cluster's PostgreSQL tier as `make up-cluster` writes it (scripts/stack/patroni.py): Patroni's
configuration of each node, HAProxy's in front of the leader, and the ports of both, from the cluster's
settings, in a directory of the test's own (nothing starts). That a leader is elected and writes go on
through pg-lb after it dies: tests/cluster/test_postgres_failover.py."""
from __future__ import annotations

import json
import os
import re
from urllib.parse import urlsplit

import pytest
import yaml

from app.core.config import describe
from scripts.stack import cluster as cluster_module
from scripts.stack import cluster_runs
from scripts.stack import single as single_module
from scripts.stack.patroni import ETCD_NODES, PG_NODES, Layout, etcd_command, haproxy_config, patroni_config
from scripts.stack.programs import StackError
from scripts.stack.single import check_ports

SECRETS = {"superuser": "s" * 20, "replication": "r" * 20}


@pytest.fixture()
def cluster(tmp_path, monkeypatch):
    monkeypatch.setattr(single_module, "STACK_DIR", tmp_path)
    monkeypatch.setattr(cluster_module, "CLUSTER_DIR", tmp_path / "cluster")
    for name, _default, _meaning in describe():  # every setting at its default, whatever this shell sets
        monkeypatch.delenv(name, raising=False)
    for name in ("CLUSTER_PG_PORT", "CLUSTER_ETCD_PORT", "CLUSTER_DATABASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SECRET_KEY", "k" * 40)
    monkeypatch.setenv("OPS_PASSWORD", "p" * 20)
    return cluster_module.Cluster


def test_each_node_is_a_synchronous_member_of_one_cluster_on_the_three_etcd_members(tmp_path):
    layout = Layout(25432, 22379)
    # As Patroni reads the file: YAML (the stack writes JSON, which YAML reads as is).
    configs = [yaml.safe_load(json.dumps(patroni_config(layout, name, tmp_path / name, SECRETS)))
               for name in PG_NODES]
    assert {c["scope"] for c in configs} == {"livequiz"} and [c["name"] for c in configs] == list(PG_NODES)
    for n, config in enumerate(configs, start=1):
        # Each node reaches etcd from its own address (cutting the address cuts it off etcd).
        assert config["etcd3"]["hosts"] == f"127.0.1.{n}:22379,127.0.1.{n}:22381,127.0.1.{n}:22383"
        assert config["etcd3"]["use_proxies"] is True  # not swapped for the members' advertised 127.0.0.1
        assert config["postgresql"]["use_unix_socket"] is True
        dcs = config["bootstrap"]["dcs"]
        # An acknowledged commit is on a standby too; only a synchronous standby may be promoted.
        assert dcs["synchronous_mode"] is True and dcs["synchronous_node_count"] == 1
        assert dcs["loop_wait"] + 2 * dcs["retry_timeout"] <= dcs["ttl"]  # Patroni's own rule
        assert dcs["postgresql"]["parameters"]["wal_level"] == "logical"  # the relay's slot
        assert dcs["postgresql"]["parameters"]["synchronous_commit"] == "on"
        # Patroni would drop the relay's slots (it drops every slot it does not manage, on the leader too).
        assert {"type": "logical", "plugin": "pgoutput"} in dcs["ignore_slots"]
        pg = config["postgresql"]
        assert not [line for line in pg["pg_hba"] if line.endswith("trust")]
        assert pg["authentication"]["replication"] == {"username": "replicator", "password": "r" * 20}
    etcd = etcd_command(layout, "etcd-2", tmp_path)
    assert etcd[etcd.index("--listen-client-urls") + 1].split(",") == [
        "http://127.0.0.1:22381", "http://127.0.1.1:22381", "http://127.0.1.2:22381", "http://127.0.1.3:22381"]
    listens = [c["postgresql"]["listen"] for c in configs] + [c["restapi"]["listen"] for c in configs]
    assert sorted(listens) == sorted([f"127.0.1.{n}:{25431 + 2 * n + k}" for n in (1, 2, 3) for k in (0, 1)])


def test_haproxy_sends_connections_to_the_node_whose_patroni_answers_primary():
    cfg = haproxy_config(Layout(25432, 22379))
    assert "bind 127.0.0.1:25432\n" in cfg
    assert "option httpchk GET /primary\n" in cfg and "http-check expect status 200\n" in cfg
    # A node marked down has its open connections closed: clients reconnect to the new leader.
    assert "on-marked-down shutdown-sessions" in cfg
    servers = re.findall(r"server (pg-\d) 127\.0\.1\.(\d):(\d+) check port (\d+)", cfg)
    assert servers == [("pg-1", "1", "25433", "25434"), ("pg-2", "2", "25435", "25436"),
                       ("pg-3", "3", "25437", "25438")]


def test_the_cluster_processes_use_pg_lb_and_its_ports_follow_their_settings(cluster, monkeypatch):
    monkeypatch.setenv("CLUSTER_PG_PORT", "25432")
    monkeypatch.setenv("CLUSTER_ETCD_PORT", "22379")
    c = cluster()
    url = urlsplit(c.environ()["DATABASE_URL"])
    assert (url.hostname, url.port, url.path) == ("127.0.0.1", 25432, "/quiz_cluster")
    ports = c.ports()
    assert set(ETCD_NODES + PG_NODES + ("pg-lb",)) <= set(ports)
    assert ports["etcd-2"] == {22381: "CLUSTER_ETCD_PORT", 22382: "CLUSTER_ETCD_PORT"}
    assert ports["pg-3"] == {25437: "CLUSTER_PG_PORT", 25438: "CLUSTER_PG_PORT"}
    every = [port for component in ports.values() for port in component]
    assert len(every) == len(set(every))


def test_a_pg_port_block_overlapping_etcd_is_refused_naming_the_setting(cluster, monkeypatch):
    monkeypatch.setenv("CLUSTER_ETCD_PORT", "25435")  # inside the PostgreSQL block
    monkeypatch.setenv("CLUSTER_PG_PORT", "25432")
    c = cluster()
    with pytest.raises(StackError, match=r"port 2543\d is configured twice \(CLUSTER_(PG|ETCD)_PORT\)"):
        check_ports(c.ports(), [])


def test_the_tests_processes_get_the_clusters_engines_but_not_its_webs_own_settings(cluster, monkeypatch):
    monkeypatch.setenv("CLUSTER_WEB_PORT", "28000")
    c = cluster()
    webs = c.environ()
    assert webs["PUBLIC_URL"] == "http://127.0.0.1:28000" and webs["OPS_PASSWORD"]
    env = cluster_runs.tests_environ(c)
    # A join QR code of the tests' own webs names their address; their /ops is off unless a test sets it.
    assert not {"PUBLIC_URL", "OPS_PASSWORD", "WEB_TRUSTED_PROXIES"} & set(env)
    assert env["DATABASE_URL"] == webs["DATABASE_URL"] and env["CLUSTER_WEB_PORT"] == "28000"
    assert env["REDIS_CLUSTER_NODES"] == webs["REDIS_CLUSTER_NODES"]


def test_a_fault_test_restores_the_cluster_it_was_started_as_whatever_the_tests_relay_mode(
        cluster, monkeypatch):
    from tests.cluster import engines as engines_module

    # The Debezium tests' run: RELAY_MODE=debezium, on a cluster `make up-cluster` started without it.
    monkeypatch.setenv("RELAY_MODE", "debezium")
    assert "connect-1" in cluster().components
    ran = []

    def run(command, **kwargs):
        ran.append((command, kwargs["env"]))
        return engines_module.subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(engines_module.subprocess, "run", run)
    engines_module.ClusterEngines(cluster_module.CLUSTER_DIR, 29092, 21000, 25432).restore()
    [(command, env)] = ran
    assert command[-2:] == ["cluster", "up"]
    # `cluster up` in that environment starts no Kafka Connect workers (nor their connector's slot on the
    # cluster's database): only what the cluster runs without them.
    for name in list(os.environ):
        if name not in env:
            monkeypatch.delenv(name)
    assert set(cluster().components) == set(cluster_module.COMPONENTS)
