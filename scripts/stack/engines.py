"""Redis and Kafka as supervised programs (PostgreSQL: postgres.py): their files written (and formatted,
the first time) before a start, and the waits that say they answer.

Each engine runs in the foreground under the supervisor, which writes its output to `NAME.log` in the
stack's run directory, and listens on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import re
import shutil
import string
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from scripts.stack.programs import PRIORITY, StackError, wait_for
from scripts.stack.supervisor import ROOT, Policy, Program, Supervisor

KAFKA_LIB = ROOT / ".cache" / "kafka" / "lib"
KAFKA_TEMPLATE = ROOT / "scripts" / "kafka-broker.properties"


def redis(
    name: str, port: int, data: Path, policy: Policy, *extra: str, setting: str = "REDIS_PORT"
) -> Program:
    """redis-server with its data (AOF every second, RDB snapshots) in `data`; `extra` configuration
    lines are appended (the cluster's `cluster-enabled yes`, ...)."""
    if not shutil.which("redis-server"):
        raise StackError("redis-server is not installed (run: scripts/deps.sh)")
    data.mkdir(parents=True, exist_ok=True)
    conf = data / "redis.conf"
    conf.write_text(
        "# Written by scripts/stack at every start; edits are overwritten.\n"
        f"bind 127.0.0.1\nprotected-mode yes\nport {port}\ndaemonize no\nloglevel notice\n"
        f"dir {data}\nappendonly yes\nappendfsync everysec\nsave 3600 1 300 100 60 10000\n"
        + "".join(line + "\n" for line in extra)
    )
    return Program(
        name,
        ["redis-server", str(conf)],
        policy,
        stop_wait_s=30,
        priority=PRIORITY["redis"],
        ports={port: setting},
    )


def redis_ready(supervisor: Supervisor, name: str, port: int) -> None:
    ping = ["redis-cli", "-h", "127.0.0.1", "-p", str(port), "ping"]
    wait_for(
        lambda: subprocess.run(ping, capture_output=True, text=True, check=False).stdout.strip() == "PONG",
        f"{name} answering PING",
        supervisor,
        [name],
        60,
        every_s=0.1,
    )


def form_redis_cluster(supervisor: Supervisor, nodes: dict[str, int]) -> None:
    """Create a Redis Cluster of `nodes` (name -> port; 3 masters with a replica each) when none has a
    slot yet (the first start; later their nodes.conf files reform it), then wait until each says
    cluster_state:ok."""

    def info(port: int, field: str) -> str:
        command = ["redis-cli", "-h", "127.0.0.1", "-p", str(port), "cluster", "info"]
        out = subprocess.run(command, capture_output=True, text=True, check=False).stdout
        lines = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith(field + ":")]
        return lines[0] if lines else ""

    if sum(int(info(port, "cluster_slots_assigned") or 0) for port in nodes.values()) == 0:
        print("redis: creating the cluster (3 masters, 1 replica each)", flush=True)
        log = supervisor.run_dir / "redis-cluster.log"
        addresses = [f"127.0.0.1:{port}" for port in nodes.values()]
        with log.open("ab") as out:
            command = [
                "redis-cli",
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ]
            done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
        if done.returncode:
            raise StackError(f"redis --cluster create failed (see {log})")
    wait_for(
        lambda: all(info(port, "cluster_state") == "ok" for port in nodes.values()),
        f"cluster_state:ok on {len(nodes)} Redis nodes (one that lost its nodes.conf: remove its directory)",
        supervisor,
        list(nodes),
        60,
        every_s=0.5,
    )


def log4j_config(purpose: str, info_loggers: list[str]) -> str:
    """A JVM's log4j2 file: WARN and above, plus INFO of the loggers named (what `purpose` says)."""
    loggers = "".join(f'    <Logger name="{name}" level="INFO"/>\n' for name in info_loggers)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by scripts/stack. WARN, plus INFO for {purpose}. -->
<Configuration status="WARN">
  <Appenders>
    <Console name="stdout" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d{{ISO8601}}] %p %m (%c{{1}})%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="WARN"><AppenderRef ref="stdout"/></Root>
{loggers}  </Loggers>
</Configuration>
"""


LOG4J = log4j_config("start and stop lines", [
    "kafka.server.KafkaRaftServer", "org.apache.kafka.controller.QuorumController", "kafka.tools.StorageTool",
    "kafka.server.BrokerLifecycleManager", "kafka.log.LogManager"])


@dataclass
class KafkaNode:
    """One combined KRaft broker+controller in `run_dir`/NAME (one for `make up`, three in the cluster).
    `replication` and `min_isr` are those of Kafka's internal topics and of new topics."""

    name: str
    run_dir: Path
    node_id: int
    port: int
    controller_port: int
    controller_bootstrap: str
    replication: int = 1
    min_isr: int = 1

    def program(
        self,
        policy: Policy,
        cluster_id_file: Path,
        *format_args: str,
        settings: tuple[str, str] = ("KAFKA_PORT", "KAFKA_CONTROLLER_PORT"),
    ) -> Program:
        """The node's files; its storage formatted on the first start with the cluster id of
        `cluster_id_file` (made when missing) and `format_args` (--standalone, or --initial-controllers)."""
        if not (KAFKA_LIB / ".complete").exists():
            raise StackError("Kafka jars missing (run: scripts/deps.sh)")
        if not shutil.which("java"):
            raise StackError("java is not installed (run: scripts/deps.sh)")
        home = self.run_dir / self.name
        data, props, log4j = home / "data", home / "server.properties", home / "log4j2.xml"
        home.mkdir(parents=True, exist_ok=True)
        props.write_text(
            string.Template(KAFKA_TEMPLATE.read_text()).substitute(
                node_id=self.node_id,
                port=self.port,
                controller_port=self.controller_port,
                controller_bootstrap=self.controller_bootstrap,
                replication=self.replication,
                min_isr=self.min_isr,
                log_dirs=data,
            )
        )
        log4j.write_text(LOG4J)
        java = [
            "java",
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={self.run_dir}",
            "-cp",
            str(KAFKA_LIB / "*"),
        ]
        formatted = home / "formatted.controller.port"
        if not (data / "meta.properties").exists():
            self._format(java, cluster_id_file, format_args)
            formatted.write_text(f"{self.controller_port}\n")
        elif formatted.exists() and formatted.read_text().strip() != str(self.controller_port):
            raise StackError(
                f"{self.name}: its data in {home} was formatted for controller port "
                f"{formatted.read_text().strip()}; set the port back or remove {home}"
            )
        heap = os.environ.get("KAFKA_HEAP_OPTS", "-Xms512m -Xmx512m").split()
        command = [
            *java[:1],
            *heap,
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            "-Djava.net.preferIPv4Stack=true",
            *java[1:],
            "kafka.Kafka",
            str(props),
        ]
        return Program(
            self.name,
            command,
            policy,
            stop_wait_s=60,
            priority=PRIORITY["kafka"],
            ports={self.port: settings[0], self.controller_port: settings[1]},
        )

    def _format(self, java: list[str], cluster_id_file: Path, format_args: tuple[str, ...]) -> None:
        log = self.run_dir / f"{self.name}.log"
        with log.open("ab") as out:
            if cluster_id_file.exists() and cluster_id_file.read_text().strip():
                cluster_id = cluster_id_file.read_text().strip()
            else:
                made = subprocess.run(
                    [*java, "kafka.tools.StorageTool", "random-uuid"],
                    stdout=subprocess.PIPE,
                    stderr=out,
                    text=True,
                    check=False,
                )
                cluster_id = made.stdout.strip().splitlines()[-1] if made.stdout.strip() else ""
                if not cluster_id:
                    raise StackError(f"{self.name}: could not make a cluster id (see {log})")
                cluster_id_file.parent.mkdir(parents=True, exist_ok=True)
                cluster_id_file.write_text(cluster_id + "\n")
            print(f"{self.name}: formatting storage (cluster id {cluster_id})")
            done = subprocess.run(
                [
                    *java,
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster_id,
                    "-c",
                    str(self.run_dir / self.name / "server.properties"),
                    *format_args,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if done.returncode:
            raise StackError(f"{self.name}: storage format failed; {log} ends:\n{Supervisor.tail(log)}")


# A Kafka node's start, from its JVM's to its broker serving (listening and unfenced): a node killed by
# SIGKILL first recovers its logs and catches up with the metadata quorum, and only then opens the broker's
# port. On two cores at a load of 45 (a chaos run on the cluster) that took more than 90 s; the bound is
# for such a machine, and a node that exits meanwhile fails the wait at once.
KAFKA_START_S = 300
_LIFECYCLE = re.compile(r"Transitioning from (\w+) to (\w+)|Loaded (\d+) logs")


def broker_state(log: Path) -> str:
    """What a node's log last said of its start (kafka.server.BrokerLifecycleManager, LogManager)."""
    said = [m.group(0) for m in _LIFECYCLE.finditer(Supervisor.tail(log, 200))]
    return said[-1] if said else "no start reported yet"


def kafka_ready(
    supervisor: Supervisor, nodes: dict[str, int], brokers: int, env: dict[str, str] | None = None
) -> None:
    """Each node's listener (name -> broker port) first (librdkafka would log every refused connection),
    then a metadata request to KAFKA_BOOTSTRAP_SERVERS that lists `brokers` brokers (python -m
    app.core.kafka wait; a fenced broker is not listed): within KAFKA_START_S in all."""
    import psutil

    deadline = time.monotonic() + KAFKA_START_S
    names = list(nodes)
    for name, port in nodes.items():
        log = supervisor.run_dir / f"{name}.log"
        try:
            wait_for(
                lambda port=port: any(
                    c.laddr.port == port and c.status == psutil.CONN_LISTEN
                    for c in psutil.net_connections("tcp")
                ),
                f"{name} listening on {port}",
                supervisor,
                [name],
                max(deadline - time.monotonic(), 1),
            )
        except StackError as error:
            raise StackError(f"{error}\n{name}'s start: {broker_state(log)}") from None
    left = max(round(deadline - time.monotonic()), 10)
    done = subprocess.run(
        [sys.executable, "-m", "app.core.kafka", "wait", str(left), "--brokers", str(brokers)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        tails = "\n".join(supervisor.tail(supervisor.run_dir / f"{name}.log", 20) for name in names)
        errors = "\n".join(line for line in done.stderr.splitlines() if not line.startswith("%"))
        raise StackError(
            f"kafka ({', '.join(names)}) did not answer with {brokers} broker(s) within {KAFKA_START_S} s:\n"
            f"{tails}\n{errors}"
        )
