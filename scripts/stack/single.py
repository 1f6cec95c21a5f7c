"""The single stack of `make up`: PostgreSQL, Redis, Kafka, the four app processes and Prometheus with
its two exporters (scripts/stack/monitoring.py) under one supervisord, everything in .stack/ (data,
NAME.log, supervisord's socket, configuration and log). With RELAY_MODE=debezium, Kafka Connect too
(scripts/stack/connect.py): it relays the outbox, and the relay process only keeps its partitions.

Ports and URLs come from app/core/config.py, so the usual overrides apply (`WEB_PORT=8001 make up`).
Tokens are signed with SECRET_KEY, and the /ops dashboard asks for OPS_PASSWORD: unless one is given,
each checkout gets its own random one (.stack/secret_key, .stack/ops_password). Every process runs
with Policy ENGINE or APP (scripts/stack/supervisor.py): one that dies is started again by the
supervisor, without anyone running `make up`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psutil

from app.core.config import load_config
from scripts.stack import legacy
from scripts.stack.connect import apply_outbox_connector, connect_program
from scripts.stack.engines import KafkaNode, kafka_ready, redis, redis_ready
from scripts.stack.monitoring import MONITORING, monitoring_programs, prometheus_ready
from scripts.stack.postgres import Postgres
from scripts.stack.programs import APPS, PRIORITY, StackError, app, kind_of, wait_http
from scripts.stack.supervisor import APP, ENGINE, LIVE, ROOT, Program, Supervisor

STACK_DIR = ROOT / ".stack"
ENGINES = ("postgres", "redis", "kafka")
CONNECT = "connect"


def say(line: str) -> None:
    print(line, flush=True)


def secret_key(stack_dir: Path, variable: str = "SECRET_KEY") -> str:
    """`variable` when given, else this checkout's own random value of it (made once, in a file of
    .stack/ named after it, mode 0600)."""
    if os.environ.get(variable):
        return os.environ[variable]
    stack_dir.mkdir(parents=True, exist_ok=True)
    path = stack_dir / variable.lower()
    if not path.exists() or not path.read_text().strip():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48) + "\n")
    return path.read_text().strip()


def port_owner(port: int) -> str | None:
    """'pid NAME' of the program listening on TCP `port` on this machine ('? ?' if unknown), None if free."""
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            try:
                return f"{conn.pid} {psutil.Process(conn.pid).name()}" if conn.pid else "? ?"
            except psutil.Error:
                return f"{conn.pid} ?"
    return None


def check_ports(wanted: dict[str, dict[int, str]], starting: list[str], hint: str = "") -> None:
    """StackError (one line) when a port is configured twice, or one that a component to start needs is
    taken by another program: nothing has been started then."""
    seen: dict[int, str] = {}
    for ports in wanted.values():
        for port, setting in ports.items():
            if port in seen:
                raise StackError(
                    f"port {port} is configured twice ({setting}); set {setting} to another port"
                )
            seen[port] = setting
    for name in starting:
        for port, setting in wanted[name].items():
            if owner := port_owner(port):
                raise StackError(
                    f"port {port} is taken by another program (pid {owner}); set {setting} to "
                    f"another port{hint}"
                )


def uptime(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    days, h = divmod(hours, 24)
    return f"{days}d{h}h" if days else f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def ps_lines(supervisor: Supervisor, components: dict[str, dict[int, str]]) -> list[str]:
    """One line a component: name, pid, state, uptime, restarts (exits on its own since supervisord
    started; each one restarted under a restarting policy), ports."""
    infos = supervisor.infos()
    exits = supervisor.exits() if infos else {}
    lines = []
    for name, ports in components.items():
        info = infos.get(name)
        state = info["statename"] if info else "STOPPED"
        pid = info["pid"] if info else 0
        lines.append(
            f"{name:<17} {pid or '-':<8} {state:<8} "
            f"{uptime(info['now'] - info['start']) if pid else '-':<8} {exits.get(name, 0):<8} "
            f"{','.join(map(str, ports)) or '-'}"
        )
    return lines


class Single:
    def __init__(self) -> None:
        self.supervisor = Supervisor(STACK_DIR)
        os.environ["SECRET_KEY"] = secret_key(STACK_DIR)
        self.own_ops_password = not os.environ.get("OPS_PASSWORD")
        os.environ["OPS_PASSWORD"] = secret_key(STACK_DIR, "OPS_PASSWORD")
        self.config = c = load_config()
        url = urlsplit(c.database_url)
        self.postgres = Postgres(
            STACK_DIR,
            c.postgres_port,
            unquote(url.username or "") or "quiz",
            unquote(url.password or "") or "quiz",
            unquote(url.path.lstrip("/")) or "quiz",
        )

    def ports(self, connect: bool | None = None) -> dict[str, dict[int, str]]:
        """Each component's ports by setting; Kafka Connect's with RELAY_MODE=debezium (or `connect`)."""
        c = self.config
        connect = self.debezium if connect is None else connect
        metrics = {
            "relay": (c.relay_metrics_port, "RELAY_METRICS_PORT"),
            "worker": (c.worker_metrics_port, "WORKER_METRICS_PORT"),
            "ingest": (c.ingest_metrics_port, "INGEST_METRICS_PORT"),
            "web": (c.web_metrics_port, "WEB_METRICS_PORT"),
        }
        ports = {
            "postgres": {c.postgres_port: "POSTGRES_PORT"},
            "redis": {c.redis_port: "REDIS_PORT"},
            "kafka": {c.kafka_port: "KAFKA_PORT", c.kafka_controller_port: "KAFKA_CONTROLLER_PORT"},
            "web": {c.web_port: "WEB_PORT"},
            "relay": {},
            "worker": {},
            "ingest": {},
            **({CONNECT: {c.connect_port: "CONNECT_PORT"}} if connect else {}),
            "exporter-redis": {c.redis_exporter_port: "REDIS_EXPORTER_PORT"},
            "exporter-postgres": {c.postgres_exporter_port: "POSTGRES_EXPORTER_PORT"},
            "prometheus": {c.prometheus_port: "PROMETHEUS_PORT"},
        }
        if connect:
            metrics[CONNECT] = (c.connect_metrics_port, "CONNECT_METRICS_PORT")
        for name, (port, setting) in metrics.items():
            if port:
                ports[name][port] = setting
        return ports

    def monitoring(self) -> dict[str, Program]:
        """Prometheus scraping this stack's processes and engines, and its exporters, by name."""
        c = self.config
        programs = monitoring_programs(
            STACK_DIR,
            APP,
            self.ports(),
            interval_s=c.prometheus_scrape_interval_s,
            redis_nodes=[f"127.0.0.1:{c.redis_port}"],
            database_url=c.database_url,
        )
        return {program.name: program for program in programs}

    def program(self, name: str) -> Program:
        """Component `name`'s program (an engine's files written, and formatted the first time)."""
        c, ports = self.config, self.ports()[name]
        if name == "postgres":
            return self.postgres.program(STACK_DIR, ENGINE)
        if name == "redis":
            return redis("redis", c.redis_port, STACK_DIR / "redis", ENGINE)
        if name == "kafka":
            node = KafkaNode(
                "kafka",
                STACK_DIR,
                1,
                c.kafka_port,
                c.kafka_controller_port,
                f"127.0.0.1:{c.kafka_controller_port}",
            )
            return node.program(ENGINE, STACK_DIR / "kafka" / "cluster.id", "--standalone")
        if name in MONITORING:
            return self.monitoring()[name]
        if name == CONNECT:
            from cache_worker.process import aggregate_types
            from outbox_relay.debezium import connector_config

            return connect_program(CONNECT, STACK_DIR, ENGINE, c, connector_config(c, aggregate_types()))
        return app(name, STACK_DIR, APP, ports=ports)

    @property
    def debezium(self) -> bool:
        return self.config.relay_mode == "debezium"

    def running(self, name: str) -> bool:
        return self.supervisor.state(name) in LIVE

    def warn_urls(self) -> None:
        """Warn (do not fail) when a URL points at another local port than the one the stack starts."""
        c, local = self.config, {"127.0.0.1", "localhost", "::1"}
        first = c.kafka_bootstrap_servers.split(",")[0].strip().rpartition(":")
        for setting, host, port, expected, name in (
            (
                "DATABASE_URL",
                urlsplit(c.database_url).hostname,
                urlsplit(c.database_url).port,
                c.postgres_port,
                "POSTGRES_PORT",
            ),
            (
                "REDIS_URL",
                urlsplit(c.redis_url).hostname,
                urlsplit(c.redis_url).port,
                c.redis_port,
                "REDIS_PORT",
            ),
            ("KAFKA_BOOTSTRAP_SERVERS", first[0], first[2], c.kafka_port, "KAFKA_PORT"),
        ):
            if host in local and port and str(port) != str(expected):
                print(
                    f"stack: warning: {setting} uses port {port} but {name}={expected}; the app will not "
                    "reach the stack's server",
                    file=sys.stderr,
                )

    def start(self, names: tuple[str, ...]) -> None:
        """Start the components `names` (in order) that are not running; all their ports are checked
        before anything starts. Topics and migrations run once the engines answer, before any app."""
        STACK_DIR.mkdir(exist_ok=True)
        self.warn_urls()
        # What the earlier scripts/stack.sh started counts as running until `make down` stops it.
        earlier = legacy.running(STACK_DIR)
        running = [name for name in names if self.running(name) or name in earlier]
        starting = [name for name in names if name not in running]
        if "postgres" in running:
            self.postgres.roles()  # a server of an older stack gets this version's roles
        if not starting:
            say(f"already running: {' '.join(names)}")
            self.prepare_data(quiet=True)
            return
        wanted = {name: ports for name, ports in self.ports().items() if name in names}
        check_ports(wanted, starting, legacy.hint(STACK_DIR))
        if running:
            say(f"already running: {' '.join(running)}")
        if not self.supervisor.answers():
            self.supervisor.start_daemon(dict(os.environ))
        engines = [name for name in starting if name in ENGINES]
        if engines:
            self.supervisor.define(*(self.program(name) for name in engines))
        for name in engines:
            self.supervisor.start(name, wait=False)
            if name == "postgres":
                self.postgres.ready(self.supervisor)
            elif name == "redis":
                redis_ready(self.supervisor, "redis", self.config.redis_port)
            else:
                started = time.monotonic()
                kafka_ready(self.supervisor, {"kafka": self.config.kafka_port}, 1)
                say(f"kafka: 1 broker(s) answering after {time.monotonic() - started:.0f} s")
        self.prepare_data(quiet=False)
        if CONNECT in starting:
            self.supervisor.define(self.program(CONNECT))
            self.supervisor.start(CONNECT, wait=False)
        apps = [name for name in starting if name in APPS]
        if apps:
            self.supervisor.define(*(self.program(name) for name in apps))
            for name in apps:
                self.supervisor.start(name, wait=False)
        watching = [name for name in starting if name in MONITORING]
        if watching:
            self.supervisor.define(*(self.program(name) for name in watching))
            for name in watching:
                self.supervisor.start(name, wait=False)

    def prepare_data(self, quiet: bool) -> None:
        """Topics and migrations: idempotent and cheap, so on every start, also when everything ran (a
        stack started before a new migration still ends at head)."""
        steps, earlier = [], legacy.running(STACK_DIR)
        if self.running("kafka") or "kafka" in earlier:
            steps.append(("creating the Kafka topics", [sys.executable, "-m", "app.core.kafka", "topics"]))
        if self.running("postgres") or "postgres" in earlier:
            steps.append(("migrations", [sys.executable, "-m", "alembic", "upgrade", "head"]))
        for what, command in steps:
            if not quiet and what == "migrations":
                say("migrations: alembic upgrade head")
            done = subprocess.run(command, cwd=ROOT, capture_output=quiet, text=True, check=False)
            if done.returncode:
                raise StackError(f"{what} failed{': ' + done.stdout + done.stderr if quiet else ''}")

    # ------------------------------------------------------------------------------------------
    # Commands
    # ------------------------------------------------------------------------------------------
    def services(self) -> None:
        self.start(ENGINES)

    def up(self) -> None:
        c = self.config
        web_was_running = self.running("web")
        self.start(ENGINES + ((CONNECT,) if self.debezium else ()) + APPS + MONITORING)
        if self.debezium:
            started = time.monotonic()
            apply_outbox_connector(self.supervisor, CONNECT, c, from_file=True)
            say(f"connect: the outbox connector runs ({time.monotonic() - started:.0f} s)")
        if not web_was_running:
            wait_http(self.supervisor, "web", f"http://{c.web_host}:{c.web_port}/healthz")
        prometheus_ready(self.supervisor, c.prometheus_port)
        say(f"Live quiz is up: http://{c.web_host}:{c.web_port}/ (host screen: /host; make ps, make logs)")
        password = ".stack/ops_password" if self.own_ops_password else "OPS_PASSWORD"
        say(
            f"Prometheus: http://127.0.0.1:{c.prometheus_port}/ (alerts: /alerts); dashboard: "
            f"http://{c.web_host}:{c.web_port}/ops (user ops, password: {password})"
        )

    def down(self) -> None:
        stopped_legacy = legacy.stop(STACK_DIR)
        if not self.supervisor.answers():
            say("stopped (data kept in .stack/)" if stopped_legacy else "nothing is running")
            return
        infos = self.supervisor.infos()  # listed in the order they stop: the webs first, the engines last
        order = sorted(infos, key=lambda name: -PRIORITY[kind_of(name)])
        live = [f"{name} (pid {infos[name]['pid']})" for name in order if infos[name]["pid"]]
        if live:
            say(f"stopping {', '.join(live)}")
        self.supervisor.shutdown()
        say("stopped (data kept in .stack/)")

    def ps(self) -> None:
        # A stack started with RELAY_MODE=debezium lists its Connect worker whatever this shell's mode is.
        connect = self.debezium or self.running(CONNECT)
        say(f"{'NAME':<17} {'PID':<8} {'STATE':<8} {'UPTIME':<8} {'RESTARTS':<8} PORT")
        for line in ps_lines(self.supervisor, self.ports(connect)):
            say(line)
        if connect:
            from outbox_relay.debezium import connector_name, connector_state

            say(f"{'connector':<17} {'-':<8} {connector_state(self.config):<8} {'-':<8} {'-':<8} "
                f"{connector_name(self.config)}")

    def clean(self) -> None:
        if Supervisor(STACK_DIR / "cluster").answers():
            raise StackError("the cluster is running: stop it first (make down, or make clean)")
        self.down()
        pg = STACK_DIR / "pg"
        if pg.is_symlink():  # its files live in postgres's home (Postgres.home)
            shutil.rmtree(pg.resolve(), ignore_errors=True)
        shutil.rmtree(STACK_DIR, ignore_errors=True)
        say("removed .stack/")


def logs(run_dir: Path, name: str | None) -> None:
    """Follow run_dir/NAME.log, or every log there (tail -F: a restarted process appends to the same file)."""
    files = [run_dir / f"{name}.log"] if name else sorted(run_dir.glob("*.log"))
    if name and not files[0].exists():
        raise StackError(f"no log {files[0]}")
    if not files:
        raise StackError(f"no logs in {run_dir} yet")
    os.execvp("tail", ["tail", "-n", "50", "-F", *map(str, files)])
