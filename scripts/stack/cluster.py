"""`make up-cluster`: the clustered topology of the live quiz on 127.0.0.1, without Docker, under one
supervisord in .stack/cluster/ (logs, data, its socket): the same programs as `make up`, each several
times.

It runs 3 Kafka nodes (combined broker+controller, a quorum of 3; the project's topics with
KAFKA_PARTITIONS partitions, replication factor 3, min.insync.replicas 2), a Redis Cluster of 3
masters with a replica each, 2 webs behind HAProxy, and 2 each of the relay, the cache worker and the
score ingest. PostgreSQL is 3 nodes under Patroni with etcd (3 members) as its store and HAProxy (pg-lb)
in front of the leader (scripts/stack/patroni.py); the app's database there is CLUSTER_DATABASE.

Ports (each a block starting at a variable, so one variable moves the block):
  CLUSTER_WEB_PORT=18000       HAProxy; the webs on the next ports (18001, 18002)
  CLUSTER_KAFKA_PORT=19092     node N: broker 19092+2(N-1), controller the port after it
  CLUSTER_REDIS_PORT=17000     nodes on 17000-17005
  CLUSTER_PG_PORT=15432        pg-lb (HAProxy to the leader); node N: PostgreSQL 15432+2N-1, Patroni's
                               REST API the port after it (15433/15434, 15435/15436, 15437/15438)
  CLUSTER_ETCD_PORT=12379      member N: client 12379+2(N-1), peer the port after it
  CLUSTER_METRICS_PORT=19101   /metrics of relay-1, relay-2, worker-1, worker-2, ingest-1, ingest-2
                               (19101-19106), web-1, web-2 (19107, 19108); then Prometheus (19109),
                               its Redis exporter (19110) and PostgreSQL exporter (19111), which
                               scrape every instance (scripts/stack/monitoring.py); with
                               RELAY_MODE=debezium connect-1, connect-2's JMX exporters (19112, 19113)
  CLUSTER_CONNECT_PORT=18083   RELAY_MODE=debezium: Kafka Connect's REST API, connect-1 and connect-2
                               (18083, 18084): two distributed workers, the relay (scripts/stack/connect.py)

Restart policy: the webs, consumers and both HAProxys are APP (restarted by the supervisor); the
Kafka, Redis, etcd and Patroni nodes are MANUAL: the cluster exists to show the other nodes carrying on
when one dies (its fault tests and chaos run crash nodes and wait for a failover, which a restart within
Redis's node timeout or Patroni's ttl would prevent); `make up-cluster` starts whatever is down.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from urllib.parse import urlsplit, urlunsplit

from scripts.stack.connect import ConnectGroup, apply_outbox_connector, connect_program
from scripts.stack.engines import KafkaNode, form_redis_cluster, kafka_ready, redis, redis_ready
from scripts.stack.monitoring import MONITORING, monitoring_programs, prometheus_ready
from scripts.stack.patroni import ETCD_NODES, PG_NODES, Layout, PatroniTier, patroni_config
from scripts.stack.programs import APPS, StackError, app, balancer, wait_for, wait_http
from scripts.stack.single import STACK_DIR, Single, check_ports, logs, ps_lines, say, secret_key
from scripts.stack.supervisor import APP, LIVE, MANUAL, ROOT, Supervisor

CLUSTER_DIR = STACK_DIR / "cluster"
KAFKA_NODES = tuple(f"kafka-{i}" for i in (1, 2, 3))
REDIS_NODES = tuple(f"redis-{i}" for i in range(1, 7))
WEBS = ("web-1", "web-2")
CONSUMERS = tuple(f"{kind}-{i}" for kind in APPS if kind != "web" for i in (1, 2))
COMPONENTS = (ETCD_NODES + PG_NODES + ("pg-lb",) + KAFKA_NODES + REDIS_NODES + WEBS + ("lb",) + CONSUMERS
              + MONITORING)
MONITORING_OFFSET = len(CONSUMERS) + len(WEBS)  # Prometheus's port in the metrics block, its exporters' after
# RELAY_MODE=debezium: the distributed Kafka Connect workers (their metrics after the exporters'), and the
# group whose three topics keep the connector, its offsets and its tasks' states.
CONNECT_NODES = ("connect-1", "connect-2")
CONNECT_GROUP = ConnectGroup("livequiz.connect")


def _index(name: str) -> int:
    return int(name.rsplit("-", 1)[1])


class Cluster:
    def __init__(self) -> None:
        self.single = Single()  # the configuration, the checkout's secret key, the app's role
        self.supervisor = Supervisor(CLUSTER_DIR)
        self.web_port = int(os.environ.get("CLUSTER_WEB_PORT", 18000))
        self.kafka_port = int(os.environ.get("CLUSTER_KAFKA_PORT", 19092))
        self.redis_port = int(os.environ.get("CLUSTER_REDIS_PORT", 17000))
        self.metrics_port = int(os.environ.get("CLUSTER_METRICS_PORT", 19101))
        self.connect_port = int(os.environ.get("CLUSTER_CONNECT_PORT", 18083))
        self.database = os.environ.get("CLUSTER_DATABASE", "quiz_cluster")
        self.layout = Layout(int(os.environ.get("CLUSTER_PG_PORT", 15432)),
                             int(os.environ.get("CLUSTER_ETCD_PORT", 12379)))
        self.patroni = PatroniTier(CLUSTER_DIR, self.layout, {
            "superuser": secret_key(CLUSTER_DIR, "CLUSTER_PG_SUPERUSER_PASSWORD"),
            "replication": secret_key(CLUSTER_DIR, "CLUSTER_PG_REPLICATION_PASSWORD"),
        })

    def port_of(self, name: str) -> int:
        kind, i = name.split("-", 1)[0], _index(name) if "-" in name else 0
        return {
            "kafka": lambda: self.kafka_port + 2 * (i - 1),
            "redis": lambda: self.redis_port + i - 1,
            "web": lambda: self.web_port + i,
            "lb": lambda: self.web_port,
            "connect": lambda: self.connect_port + i - 1,
        }[kind]()

    @property
    def components(self) -> tuple[str, ...]:
        return COMPONENTS + (CONNECT_NODES if self.single.debezium else ())

    def ports(self) -> dict[str, dict[int, str]]:
        ports: dict[str, dict[int, str]] = self.layout.ports()
        for name in KAFKA_NODES:
            ports[name] = {
                self.port_of(name): "CLUSTER_KAFKA_PORT",
                self.port_of(name) + 1: "CLUSTER_KAFKA_PORT",
            }
        for name in REDIS_NODES:
            ports[name] = {self.port_of(name): "CLUSTER_REDIS_PORT"}
        for offset, name in enumerate(CONSUMERS):
            ports[name] = {self.metrics_port + offset: "CLUSTER_METRICS_PORT"}
        for name in WEBS:  # metrics after the consumers'
            ports[name] = {
                self.port_of(name): "CLUSTER_WEB_PORT",
                self.metrics_port + len(CONSUMERS) + _index(name) - 1: "CLUSTER_METRICS_PORT",
            }
        ports["lb"] = {self.web_port: "CLUSTER_WEB_PORT"}
        for offset, name in enumerate(MONITORING + CONNECT_NODES, start=MONITORING_OFFSET):
            ports[name] = {self.metrics_port + offset: "CLUSTER_METRICS_PORT"}
        for name in CONNECT_NODES:
            ports[name] = {self.port_of(name): "CLUSTER_CONNECT_PORT", **ports[name]}
        return {name: ports[name] for name in self.components}

    def environ(self) -> dict[str, str]:
        """What every cluster process runs with; the per-process ports are set in each program's own."""
        kafka = ",".join(f"127.0.0.1:{self.port_of(name)}" for name in KAFKA_NODES)
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": kafka,
            # Every Redis client is a RedisCluster when REDIS_CLUSTER_NODES is set; REDIS_URL names one node.
            "REDIS_CLUSTER_NODES": ",".join(f"127.0.0.1:{self.port_of(name)}" for name in REDIS_NODES),
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            # The single stack's role, on the cluster's leader through pg-lb, the cluster's own database.
            "DATABASE_URL": self.database_url(),
            "WEB_HOST": "127.0.0.1",
            # Players open the balancer, not one web: the join link and its QR code name it.
            "PUBLIC_URL": os.environ.get("PUBLIC_URL") or f"http://127.0.0.1:{self.web_port}",
            # HAProxy adds X-Forwarded-For: the webs trust one proxy for the client address.
            "WEB_TRUSTED_PROXIES": "1",
            # The dashboard of the cluster's webs reads the cluster's Prometheus.
            "PROMETHEUS_URL": f"http://127.0.0.1:{self.metrics_port + MONITORING_OFFSET}",
        }

    def running(self) -> list[str]:
        return [name for name, info in self.supervisor.infos().items() if info["statename"] in LIVE]

    # ------------------------------------------------------------------------------------------
    # Pieces
    # ------------------------------------------------------------------------------------------
    def database_url(self) -> str:
        url = urlsplit(self.single.config.database_url)
        login = url.netloc.rsplit("@", 1)[0]
        netloc = f"{login}@127.0.0.1:{self.layout.pg_port}"
        return urlunsplit(url._replace(netloc=netloc, path=f"/{self.database}"))

    def postgres(self, starting: list[str]) -> None:
        """etcd, the Patroni nodes and pg-lb (those of them in `starting`); then the leader, its synchronous
        standby, and the app's role and database on it."""
        tier = self.patroni
        programs = [tier.etcd_program(n, MANUAL) for n in ETCD_NODES if n in starting]
        programs += [tier.node_program(n, MANUAL) for n in PG_NODES if n in starting]
        if "pg-lb" in starting:
            programs.append(tier.balancer_program(APP))
        if programs:
            self.supervisor.define(*programs)
        tier.start(self.supervisor, programs)
        leader, standby = tier.wait_leader(self.supervisor)
        say(f"patroni: {leader} leads, {standby} is its synchronous standby")
        tier.apply_dynamic(patroni_config(self.layout, "pg-1", CLUSTER_DIR / "pg-1", tier.secrets))
        pg = self.single.postgres
        tier.roles(pg.user, pg.password, self.database)

    def kafka_programs(self, names: list[str]):
        voters_file = CLUSTER_DIR / "kafka-initial-controllers"
        # Each voter's node id, controller endpoint and metadata directory id: fixed at the first format.
        if not voters_file.exists():
            import base64
            import uuid

            voters_file.write_text(
                ",".join(
                    f"{_index(n)}@127.0.0.1:{self.port_of(n) + 1}:"
                    f"{base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b'=').decode()}"
                    for n in KAFKA_NODES
                )
            )
        quorum = ",".join(f"127.0.0.1:{self.port_of(n) + 1}" for n in KAFKA_NODES)
        return [
            KafkaNode(
                name, CLUSTER_DIR, _index(name), self.port_of(name), self.port_of(name) + 1, quorum, 3, 2
            ).program(
                MANUAL,
                CLUSTER_DIR / "kafka-cluster.id",
                "--initial-controllers",
                voters_file.read_text().strip(),
                settings=("CLUSTER_KAFKA_PORT", "CLUSTER_KAFKA_PORT"),
            )
            for name in names
        ]

    def prepare_data(self, quiet: bool) -> None:
        """The topics (replication 3, min ISR 2) and the migrations of the cluster's database."""
        topics = ["-m", "app.core.kafka", "topics", "--replication-factor", "3", "--min-insync-replicas", "2"]
        for what, command in (("kafka", [sys.executable, *topics]),
                              ("migrations", [sys.executable, "-m", "alembic", "upgrade", "head"])):
            done = subprocess.run(command, cwd=ROOT, env=self.environ(), capture_output=True, text=True,
                                  check=False)
            if done.returncode:
                raise StackError(f"{what} failed: {done.stdout}{done.stderr}")
            if not quiet:
                said = done.stdout.strip() if what == "kafka" else f"{self.database} at head"
                say(f"{what}: {said}")

    def monitoring(self) -> list:
        """Prometheus scraping every instance of the cluster, and its exporters."""
        nodes = [f"127.0.0.1:{self.port_of(name)}" for name in REDIS_NODES]
        return monitoring_programs(CLUSTER_DIR, APP, self.ports(), redis_nodes=nodes,
                                   interval_s=self.single.config.prometheus_scrape_interval_s,
                                   database_url=self.environ()["DATABASE_URL"])

    def balancer(self):
        """HAProxy with the edge check's files written from the webs' own configuration (app/web/edge.py)."""
        edge_dir = CLUSTER_DIR / "edge"
        done = subprocess.run(
            [sys.executable, "-m", "app.web.edge", str(edge_dir)],
            cwd=ROOT,
            env=self.environ(),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            raise StackError(f"writing the edge's files failed: {done.stdout}{done.stderr}")
        edge = dict(
            line.split("=", 1) for line in (edge_dir / "haproxy.env").read_text().splitlines() if "=" in line
        )
        program = balancer("lb", APP, self.web_port, [self.port_of(name) for name in WEBS], edge)
        check = subprocess.run(
            ["haproxy", "-c", "-q", "-f", program.command[-1]],
            env={**os.environ, **program.env},
            capture_output=True,
            text=True,
            check=False,
        )
        if check.returncode:
            raise StackError(f"haproxy: invalid {program.command[-1]}: {check.stdout}{check.stderr}")
        return program

    def wait_balancer(self) -> None:
        """Ready when /healthz through the balancer has been answered by each web (its X-Upstream header)."""
        seen: set[str] = set()

        def both() -> bool:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.web_port}/healthz", timeout=2
                ) as response:
                    seen.add(response.headers.get("X-Upstream", ""))
            except OSError:
                pass
            return set(WEBS) <= seen

        wait_for(both, "/healthz through the balancer answered by web-1 and web-2", self.supervisor, ["lb"],
                 60, every_s=0.25)
        say(f"lb: http://127.0.0.1:{self.web_port}/healthz answered by web-1 and web-2")

    # ------------------------------------------------------------------------------------------
    # Commands
    # ------------------------------------------------------------------------------------------
    def up(self) -> None:
        CLUSTER_DIR.mkdir(parents=True, exist_ok=True)
        running = self.running()
        starting = [name for name in self.components if name not in running]
        if not starting:
            say(f"already running: all {len(self.components)} cluster components (make ps)")
            self.postgres([])
            self.prepare_data(quiet=True)
            say(f"Live quiz cluster is up: http://127.0.0.1:{self.web_port}/")
            return
        if running:
            say(f"already running: {' '.join(running)}")
        check_ports(self.ports(), starting)
        if not shutil.which("haproxy"):
            raise StackError("haproxy is not installed (run: scripts/deps.sh cluster)")
        if not self.supervisor.answers():
            self.supervisor.start_daemon(self.environ())
        self.postgres(starting)
        # The nodes of each cluster start together: a Kafka quorum needs two voters before it answers.
        engines = self.kafka_programs([n for n in KAFKA_NODES if n in starting]) + [
            redis(name, self.port_of(name), CLUSTER_DIR / name, MANUAL, "cluster-enabled yes",
                  "cluster-config-file nodes.conf", "cluster-node-timeout 5000", setting="CLUSTER_REDIS_PORT")
            for name in REDIS_NODES
            if name in starting
        ]
        if engines:
            self.supervisor.define(*engines)
        for program in engines:
            self.supervisor.start(program.name, wait=False)
        for name in REDIS_NODES:
            redis_ready(self.supervisor, name, self.port_of(name))
        started = time.monotonic()
        kafka_ready(self.supervisor, {name: self.port_of(name) for name in KAFKA_NODES}, 3, self.environ())
        say(f"kafka: 3 broker(s) answering after {time.monotonic() - started:.0f} s")
        form_redis_cluster(self.supervisor, {name: self.port_of(name) for name in REDIS_NODES})
        say("redis: cluster_state:ok on 6 nodes")
        self.prepare_data(quiet=False)
        ports = self.ports()
        apps = [name for name in WEBS + CONSUMERS if name in starting]
        programs = [
            app(name, CLUSTER_DIR, APP, self.app_env(name, ports[name]), ports[name]) for name in apps
        ]
        if "lb" in starting:
            programs.append(self.balancer())
        programs += [program for program in self.monitoring() if program.name in starting]
        if programs:
            self.supervisor.define(*programs)
        for name in apps + [name for name in MONITORING if name in starting]:
            self.supervisor.start(name, wait=False)
        for name in WEBS:
            wait_http(self.supervisor, name, f"http://127.0.0.1:{self.port_of(name)}/healthz")
        if "lb" in starting:
            self.supervisor.start("lb", wait=False)
        self.wait_balancer()
        prometheus_ready(self.supervisor, self.ports()["prometheus"].popitem()[0])
        if self.single.debezium:
            self.connect([name for name in CONNECT_NODES if name in starting])
        say(f"Live quiz cluster is up: http://127.0.0.1:{self.web_port}/ (make ps; logs in .stack/cluster/)")

    def connect_config(self, name: str):
        """Connect worker `name`'s configuration: the cluster's brokers and database, its own ports."""
        env = self.environ()
        rest, metrics = self.ports()[name]
        return self.single.config.replace(
            kafka_bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"], database_url=env["DATABASE_URL"],
            connect_port=rest, connect_metrics_port=metrics)

    def connect(self, starting: list[str]) -> None:
        """The distributed Connect workers of `starting`, then the outbox connector applied once through
        connect-1's REST API (a PUT: the same configuration again changes nothing) and running."""
        programs = [connect_program(name, CLUSTER_DIR, APP, self.connect_config(name), None, CONNECT_GROUP)
                    for name in starting]
        if programs:
            self.supervisor.define(*programs)
        for program in programs:
            self.supervisor.start(program.name, wait=False)
        apply_outbox_connector(self.supervisor, CONNECT_NODES[0], self.connect_config(CONNECT_NODES[0]))
        say(f"connect: the outbox connector runs ({', '.join(CONNECT_NODES)}; group {CONNECT_GROUP.group})")

    @staticmethod
    def app_env(name: str, ports: dict[int, str]) -> dict[str, str]:
        port, metrics = list(ports)[0], list(ports)[-1]
        kind = name.split("-", 1)[0]
        if kind == "web":
            return {"WEB_PORT": str(port), "WEB_METRICS_PORT": str(metrics)}
        return {f"{kind.upper()}_METRICS_PORT": str(metrics)}

    def down(self) -> None:
        from scripts.stack import legacy

        stopped_legacy = legacy.stop(CLUSTER_DIR)
        if not self.supervisor.answers():
            say("cluster stopped (data kept in .stack/cluster/)" if stopped_legacy else "cluster: down")
            return
        # Clients first (the relays flush to Kafka), then all Kafka nodes at once, then the rest.
        self.supervisor.stop_together(["lb"])
        self.supervisor.stop_together(list(WEBS + CONSUMERS + CONNECT_NODES))
        self.supervisor.stop_together(list(KAFKA_NODES))
        self.supervisor.stop_together(["pg-lb"])
        self.supervisor.stop_together(list(PG_NODES))  # each Patroni stops its PostgreSQL, then etcd
        self.supervisor.shutdown()
        say("cluster stopped (data kept in .stack/cluster/)")

    def ps(self) -> None:
        say(f"{'CLUSTER':<17} {'PID':<8} {'STATE':<8} {'UPTIME':<8} {'RESTARTS':<8} PORT")
        for line in ps_lines(self.supervisor, self.ports()):
            say(line)
        if self.single.debezium:
            from outbox_relay.debezium import connector_name, connector_state

            config = self.connect_config(CONNECT_NODES[0])
            say(f"{'connector':<17} {'-':<8} {connector_state(config):<8} {'-':<8} {'-':<8} "
                f"{connector_name(config)}")
        if self.running():
            say(self.patroni.table())

    def logs(self, name: str | None) -> None:
        logs(CLUSTER_DIR, name)
