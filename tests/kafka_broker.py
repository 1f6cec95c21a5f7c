"""A single-node KRaft broker of a test's own, from the same jars and the same settings as the stack's
(scripts/kafka-broker.properties), so a test may stop, kill and restart it."""
from __future__ import annotations

import base64
import shutil
import string
import subprocess
import uuid
from pathlib import Path

from app.core.config import Config
from app.core.kafka import broker_answers
from tests.helpers import free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
KAFKA_LIB = ROOT / ".cache" / "kafka" / "lib"
BROKER_TEMPLATE = ROOT / "scripts" / "kafka-broker.properties"


class PrivateKafka:
    def __init__(self, workdir: Path):
        assert (KAFKA_LIB / ".complete").exists(), "Kafka jars missing: run scripts/deps.sh"
        self.workdir = workdir
        self.props = workdir / "server.properties"
        self.log = workdir / "kafka.log"
        self.java = ["java", "-Xms256m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                     "-Djava.net.preferIPv4Stack=true", f"-Dkafka.logs.dir={workdir}",
                     "-cp", str(KAFKA_LIB / "*")]
        # Formatting once failed in a CI run with its log lost: a second try on fresh ports, and the
        # broker's own words in the failure if that fails too.
        for _ in range(2):
            if self._format():
                break
        else:
            raise AssertionError("formatting the private broker failed twice:\n"
                                 f"{self.log.read_text()[-4000:]}")
        self.proc: subprocess.Popen | None = None

    def _format(self) -> bool:
        self.port = free_port()
        self.controller_port = next(p for p in iter(free_port, None) if p != self.port)
        self.bootstrap = f"127.0.0.1:{self.port}"
        data = self.workdir / "data"
        if data.exists():
            shutil.rmtree(data)
        self.props.write_text(string.Template(BROKER_TEMPLATE.read_text()).substitute(
            node_id=1, port=self.port, controller_port=self.controller_port,
            controller_bootstrap=f"127.0.0.1:{self.controller_port}", replication=1, min_isr=1,
            log_dirs=data))
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        with self.log.open("a") as out:
            done = subprocess.run(self.java + ["kafka.tools.StorageTool", "format", "--standalone", "-t",
                                               cluster_id,
                                               "-c", str(self.props)], stdout=out, stderr=out, timeout=60)
        return done.returncode == 0

    def start(self) -> None:
        out = self.log.open("a")
        self.proc = subprocess.Popen(self.java + ["kafka.Kafka", str(self.props)], stdout=out, stderr=out,
                                     start_new_session=True)
        config = Config(kafka_bootstrap_servers=self.bootstrap)
        wait_until(lambda: self.proc.poll() is None and broker_answers(config, timeout_s=1),
                   f"the private broker on {self.bootstrap} did not answer (see {self.log})", every_s=0.3)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
