"""One supervisord and the programs it runs: the processes of one stack, in a directory of their own.

`make up`, the cluster, and the test, bench and chaos stacks each run one supervisord (Supervisor's
package, https://supervisord.org) in their run directory: its configuration (`supervisord.conf`, a
file per program under `programs/`), its socket, its own log and each program's log (`NAME.log`).
This module writes those files and speaks to supervisord over its socket (XML-RPC, as supervisorctl
does); supervisord starts, watches, stops and restarts the processes.

A program's Policy says what happens when it exits without being asked to:
- APP (web, relay, worker, ingest, HAProxy under `make up` and the cluster): started again at once; a
  start that dies within `start_s` is retried after 1 s, 2 s, 3 s... and given up (FATAL) after
  `retries` of them in a row.
- ENGINE (PostgreSQL, Redis, Kafka under `make up`): the same, judged on a longer bound: a start
  counts after 10 s up (their starts are slow, and a bad data directory shows within seconds) and
  20 failed starts in a row (a few minutes, e.g. until the backends of a killed PostgreSQL are gone).
- MANUAL (the test and bench stacks, the cluster's Kafka and Redis nodes): never started again by the
  supervisor; whoever killed it decides when it comes back, and an exit stays visible.
"""

from __future__ import annotations

import os
import re
import resource
import shlex
import signal
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path

from supervisor.xmlrpc import Faults, SupervisorTransport

ROOT = Path(__file__).resolve().parents[2]
# Longest wait for supervisord itself to answer, or to stop.
DAEMON_WAIT_S = 30
# Longest wait for a whole stack to stop: each program has its own bound (stop_wait_s) before SIGKILL.
SHUTDOWN_S = 600
# Open files a stack's processes may hold (the bench's fan-out holds 10,000 sockets in one web).
NOFILE = 20_000


@dataclass(frozen=True)
class Policy:
    """What the supervisor does when a program exits on its own (see the module's docstring)."""

    restart: bool
    start_s: int
    retries: int


APP = Policy(restart=True, start_s=3, retries=10)
ENGINE = Policy(restart=True, start_s=10, retries=20)
MANUAL = Policy(restart=False, start_s=1, retries=0)


@dataclass
class Program:
    """One process of a stack, as supervisord runs it."""

    name: str
    command: list[str]
    policy: Policy
    env: dict[str, str] = field(default_factory=dict)  # on top of supervisord's own environment
    directory: Path = ROOT
    user: str | None = None
    stop_signal: str = "TERM"
    stop_wait_s: int = 15
    group_signals: bool = True  # a stop reaches the whole process group (a gunicorn master's workers)
    priority: int = 500  # stopped in descending order by `shutdown`
    ports: dict[int, str] = field(default_factory=dict)  # port -> the setting that moves it

    def section(self, run_dir: Path) -> str:
        for key, value in self.env.items():
            if '"' in value or "\n" in value:
                raise ValueError(f"{self.name}: {key} holds a character supervisord cannot pass on")
        lines = {
            "command": shlex.join(self.command),
            "directory": str(self.directory),
            "environment": ",".join(f'{key}="{value}"' for key, value in self.env.items()),
            "autostart": "false",
            "autorestart": str(self.policy.restart).lower(),
            "startsecs": self.policy.start_s,
            "startretries": self.policy.retries,
            "stopsignal": self.stop_signal,
            "stopwaitsecs": self.stop_wait_s,
            "stopasgroup": str(self.group_signals).lower(),
            "killasgroup": "true",
            "priority": self.priority,
            "redirect_stderr": "true",
            "stdout_logfile": str(run_dir / f"{self.name}.log"),
            "stdout_logfile_maxbytes": 0,
        }
        if self.user:
            lines["user"] = self.user
        body = "".join(
            f"{key} = {str(value).replace('%', '%%')}\n" for key, value in lines.items() if value != ""
        )
        return f"[program:{self.name}]\n{body}"


# supervisord's log lines that the restart count reads: a start that held, an exit, a requested stop.
_EVENT = re.compile(r" (success|exited|stopped): (\S+) ")
_STARTED = "supervisord started with pid"
# States in which a program counts as running for a test (it is, or is about to be).
LIVE = {"STARTING", "RUNNING", "STOPPING", "BACKOFF"}


class Supervisor:
    """The supervisord of `run_dir` (started by `start_daemon`, or found running there)."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.conf = run_dir / "supervisord.conf"
        self.socket = run_dir / "supervisor.sock"
        self.log = run_dir / "supervisord.log"
        self.programs_dir = run_dir / "programs"

    # ------------------------------------------------------------------------------------------
    # supervisord itself
    # ------------------------------------------------------------------------------------------
    def rpc(self):
        """A proxy of supervisord's interface (a new connection each time: threads may share a stack)."""
        proxy = xmlrpc.client.ServerProxy(
            "http://127.0.0.1", transport=SupervisorTransport(None, None, f"unix://{self.socket}")
        )
        return proxy.supervisor

    def answers(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            return self.rpc().getState()["statename"] == "RUNNING"
        except (OSError, xmlrpc.client.Error):
            return False

    def start_daemon(self, environ: dict[str, str]) -> subprocess.Popen:
        """supervisord with `environ` (every program's environment, before its own `env`), detached in a
        session of its own so it outlives the caller; returns once it answers."""
        self.programs_dir.mkdir(parents=True, exist_ok=True)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        minfds = max(soft, NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard))
        self.conf.write_text(
            "; Written by scripts/stack at every start of this supervisord; edits are overwritten.\n"
            f"[unix_http_server]\nfile = {self.socket}\nchmod = 0700\n\n"
            f"[supervisord]\nlogfile = {self.log}\nlogfile_maxbytes = 0\n"
            f"pidfile = {self.run_dir / 'supervisord.pid'}\n"
            f"childlogdir = {self.run_dir}\nnodaemon = true\nminfds = {minfds}\n\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
            f"[supervisorctl]\nserverurl = unix://{self.socket}\n\n"
            f"[include]\nfiles = {self.programs_dir}/*.conf\n"
        )
        for stale in self.programs_dir.glob("*.conf"):
            stale.unlink()  # a program is defined by whoever starts it, each time
        daemon = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.conf)],
            cwd=ROOT,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + DAEMON_WAIT_S
        while not self.answers():
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"supervisord did not start (see {self.log}):\n{self.tail(self.log)}")
            time.sleep(0.1)
        return daemon

    def shutdown(self) -> None:
        """Stop every program, one at a time in descending priority (clients before the engines they
        use), then supervisord; returns once it is gone."""
        if not self.answers():
            return
        pid = int((self.run_dir / "supervisord.pid").read_text().strip() or 0)
        try:
            self.rpc().shutdown()
        except (OSError, xmlrpc.client.Error):
            pass
        deadline = time.monotonic() + SHUTDOWN_S
        while pid and alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)

    # ------------------------------------------------------------------------------------------
    # Programs
    # ------------------------------------------------------------------------------------------
    def define(self, *programs: Program) -> None:
        """Add these programs (not started), or replace one whose definition changed (stopped first)."""
        for program in programs:
            path = self.programs_dir / f"{program.name}.conf"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # environments hold secrets
            with os.fdopen(fd, "w") as out:
                out.write(program.section(self.run_dir))
        rpc = self.rpc()
        [[added, changed, _removed]] = rpc.reloadConfig()
        for name in changed:
            self.stop(name)
            rpc.removeProcessGroup(name)
        for name in added + changed:
            rpc.addProcessGroup(name)

    def start(self, name: str, wait: bool = True) -> None:
        """Start `name` unless it runs; with `wait`, return once its policy counts it started."""
        try:
            self.rpc().startProcess(name, wait)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode != Faults.ALREADY_STARTED:
                raise RuntimeError(
                    f"{name} did not start ({fault.faultString}); its log ends:\n"
                    f"{self.tail(self.run_dir / f'{name}.log')}"
                ) from None

    def stop(self, name: str) -> None:
        try:
            self.rpc().stopProcess(name, True)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode not in (Faults.NOT_RUNNING, Faults.BAD_NAME):
                raise

    def stop_together(self, names: list[str]) -> None:
        """Signal all of `names` at once, then wait until each has stopped (Kafka nodes: one stopping after
        the others would wait for a quorum that is gone)."""
        for name in names:
            try:
                self.rpc().stopProcess(name, False)
            except xmlrpc.client.Fault as fault:
                if fault.faultCode not in (Faults.NOT_RUNNING, Faults.BAD_NAME):
                    raise
        deadline = time.monotonic() + SHUTDOWN_S
        while any(self.state(name) in LIVE for name in names) and time.monotonic() < deadline:
            time.sleep(0.1)

    def info(self, name: str) -> dict | None:
        """supervisord's record of `name` (statename, pid, start, now, exitstatus...), None if unknown."""
        try:
            return self.rpc().getProcessInfo(name)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode == Faults.BAD_NAME:
                return None
            raise

    def infos(self) -> dict[str, dict]:
        if not self.answers():
            return {}
        return {info["name"]: info for info in self.rpc().getAllProcessInfo()}

    def state(self, name: str) -> str:
        info = self.info(name) if self.answers() else None
        return info["statename"] if info else "STOPPED"

    def pid(self, name: str) -> int:
        """The process's pid while it runs, 0 when it does not."""
        info = self.info(name)
        return info["pid"] if info else 0

    def kill(self, name: str, signum: int = signal.SIGKILL, group: bool = False) -> int:
        """Send `signum` to the process (or its whole process group); returns its pid."""
        pid = self.pid(name)
        if not pid:
            raise RuntimeError(f"{name} is not running")
        if group:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
        return pid

    def exits(self) -> dict[str, int]:
        """How often each program exited on its own after it had started, since supervisord started:
        under a restarting policy, how often the supervisor started it again. From supervisord's log."""
        running: dict[str, bool] = {}
        counts: dict[str, int] = {}
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return counts
        for line in lines:
            if _STARTED in line:
                running, counts = {}, {}
                continue
            event = _EVENT.search(line)
            if not event:
                continue
            kind, name = event.groups()
            if kind == "exited" and running.get(name):
                counts[name] = counts.get(name, 0) + 1
            running[name] = kind == "success"
        return counts

    def process(self, name: str) -> Process:
        return Process(self, name)

    @staticmethod
    def tail(path: Path, lines: int = 30) -> str:
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return f"({path} does not exist)"


@dataclass
class Process:
    """A supervised program as a test holds a child process: its pid now, whether it still runs."""

    supervisor: Supervisor
    name: str

    @property
    def pid(self) -> int:
        return self.supervisor.pid(self.name)

    def poll(self) -> int | None:
        """None while it runs (or is starting); else its exit status (-1 after a signal)."""
        info = self.supervisor.info(self.name)
        if info is None or info["statename"] in LIVE:
            return None
        return -1 if info["exitstatus"] is None or info["statename"] == "FATAL" else info["exitstatus"]

    @property
    def returncode(self) -> int | None:
        return self.poll()

    def stop(self) -> None:
        """SIGTERM (its stop signal), SIGKILL after its stop bound; returns once it has exited."""
        self.supervisor.stop(self.name)

    def wait(self, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while (code := self.poll()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} still runs after {timeout_s:.0f} s")
            time.sleep(0.05)
        return code


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not reaped yet) has stopped
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False
