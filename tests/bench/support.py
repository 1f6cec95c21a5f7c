"""Shared machinery of the benchmark suite: data generation, load generators, CPU use (the bench stack's
processes are tests/bench/stack.py's).

Everything runs against a dedicated database (`quiz_bench`), Redis keys of prefix `bench.<run>:` (in logical
database 14 of one Redis, database 0 of a cluster) and topics
`bench.<run>.*`, on 127.0.0.1 only. Loads are bounded in count and time.
"""
from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import requests
from sqlalchemy import text

from app.accounts.tokens import issue_token
from app.core.config import Config

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = ROOT / "bench-results"
# The venv's own py-spy (a bench dependency): the bench may run without the venv on PATH.
PY_SPY = str(Path(sys.executable).with_name("py-spy"))
# Its own database (BENCH_DATABASE): the run drops and recreates it, so two runs on one server need two names.
BENCH_DATABASE = os.environ.get("BENCH_DATABASE", "quiz_bench")
BENCH_REDIS_DB = 14
NOFILE = 20_000


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def raise_nofile(limit: int = NOFILE) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(limit, hard) if hard != resource.RLIM_INFINITY else limit
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --------------------------------------------------------------------------------------------------
# CPU accounting of load generators
# --------------------------------------------------------------------------------------------------

class CpuMeter:
    """CPU seconds of this process (all threads, incl. librdkafka's) and of reaped children (wrk,
    pgbench, redis-benchmark) over a window, plus the machine's CPU use in the same window."""

    def __enter__(self) -> CpuMeter:
        self.wall0 = time.monotonic()
        self.self0 = resource.getrusage(resource.RUSAGE_SELF)
        self.child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        psutil.cpu_percent(None)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall = time.monotonic() - self.wall0
        s1 = resource.getrusage(resource.RUSAGE_SELF)
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.self_cpu_s = (s1.ru_utime - self.self0.ru_utime) + (s1.ru_stime - self.self0.ru_stime)
        self.child_cpu_s = (c1.ru_utime - self.child0.ru_utime) + (c1.ru_stime - self.child0.ru_stime)
        self.machine_cpu_pct = psutil.cpu_percent(None)

    def report(self, generator: str) -> dict[str, Any]:
        wall = max(self.wall, 1e-9)
        gen_cpu = self.child_cpu_s if generator == "child" else self.self_cpu_s
        return {"generator": generator, "wall_s": round(self.wall, 2),
                "generator_cpu_s": round(gen_cpu, 2),
                "generator_cpu_cores": round(gen_cpu / wall, 3),
                "bench_process_cpu_s": round(self.self_cpu_s, 2),
                "machine_cpu_pct": self.machine_cpu_pct}


# --------------------------------------------------------------------------------------------------
# Data: quizzes, rooms and players written with SQL (fast), tokens issued in-process
# --------------------------------------------------------------------------------------------------

@dataclass
class Player:
    user_id: uuid.UUID
    participant_id: uuid.UUID
    token: str


@dataclass
class Room:
    session_id: uuid.UUID
    host_id: uuid.UUID
    host_token: str
    players: list[Player]
    question_ids: list[uuid.UUID]
    correct: list[int]


_code_counter = [0]


def make_rooms(engine, config: Config, rooms: int, players: int, questions: int, *, prefix: int,
               time_limit_s: int = 240) -> list[Room]:
    """`rooms` sessions in the lobby, each with its own quiz of `questions` and `players` participants.

    `prefix` (1..8) is the first digit of the join codes, so room sets never collide."""
    made: list[Room] = []
    users, quizzes, questions_rows, sessions, participants = [], [], [], [], []
    for _ in range(rooms):
        host, quiz, session = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        users.append({"id": host, "nickname": "bench-host"})
        quizzes.append({"id": quiz, "owner": host})
        qids, correct = [], []
        for q in range(questions):
            qid = uuid.uuid4()
            qids.append(qid)
            correct.append(q % 4)
            questions_rows.append({"id": qid, "quiz": quiz, "pos": q, "text": f"Q{q + 1}?", "correct": q % 4,
                                   "limit": time_limit_s})
        _code_counter[0] += 1
        sessions.append({"id": session, "quiz": quiz, "host": host,
                         "code": f"{prefix}{_code_counter[0]:05d}"})
        room_players = []
        for p in range(players):
            user, participant = uuid.uuid4(), uuid.uuid4()
            users.append({"id": user, "nickname": f"p{p}"})
            participants.append({"id": participant, "s": session, "u": user, "nick": f"p{p}"})
            room_players.append(Player(user, participant, issue_token(config, user, True)))
        made.append(Room(session, host, issue_token(config, host, True), room_players, qids, correct))
    with engine.begin() as db:
        db.execute(text("INSERT INTO users (id, nickname, is_guest) VALUES (:id, :nickname, true)"), users)
        db.execute(text("INSERT INTO quizzes (id, owner_id, title) VALUES (:id, :owner, 'bench')"), quizzes)
        db.execute(text("INSERT INTO questions (id, quiz_id, position, text, choices, correct_choice, "
                        "time_limit_s, points) VALUES (:id, :quiz, :pos, :text, '[\"a\",\"b\",\"c\",\"d\"]', "
                        ":correct, :limit, 1000)"), questions_rows)
        db.execute(text("INSERT INTO quiz_sessions (id, quiz_id, host_id, join_code, status) "
                        "VALUES (:id, :quiz, :host, :code, 'lobby')"), sessions)
        if participants:
            db.execute(text("INSERT INTO quiz_session_participants (id, quiz_session_id, user_id, nickname) "
                            "VALUES (:id, :s, :u, :nick)"), participants)
    return made


def open_next(http: requests.Session, base_url: str, room: Room) -> int:
    response = http.post(f"{base_url}/api/v1/sessions/{room.session_id}/questions/next",
                         headers={"Authorization": f"Bearer {room.host_token}"}, timeout=30)
    return response.status_code


# --------------------------------------------------------------------------------------------------
# An asyncio HTTP/1.1 keep-alive client: small and cheap enough to be an open-loop generator
# --------------------------------------------------------------------------------------------------

class HttpPool:
    """At most `size` requests in flight, each on a free keep-alive connection (opened when none is free)."""

    def __init__(self, host: str, port: int, size: int):
        self.host, self.port, self.size = host, port, size
        self._slots: asyncio.Semaphore | None = None
        self._idle: list = []

    async def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
                      answer_within_s: float | None = None) -> tuple[int, bytes]:
        """(status, body). `answer_within_s` bounds the wait for the answer once the request is sent (the
        wait for a free connection is not counted): past it, TimeoutError, and the connection is closed."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.size)
        async with self._slots:
            if self._idle:
                reader, writer = self._idle.pop()
            else:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                    f"Content-Length: {len(body)}", "Content-Type: application/json"]
            head += [f"{k}: {v}" for k, v in (headers or {}).items()]
            try:
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
                answer = _read_response(reader)
                status, payload, close = await (answer if answer_within_s is None
                                                else asyncio.wait_for(answer, answer_within_s))
            except BaseException:
                writer.close()
                raise
            if close:
                writer.close()
            else:
                self._idle.append((reader, writer))
            return status, payload

    async def close(self) -> None:
        while self._idle:
            _, writer = self._idle.pop()
            writer.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, whether the server closes the connection) of one HTTP/1.1 response."""
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    length, close = 0, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    payload = await reader.readexactly(length) if length else b""
    return status, payload, close


def percentiles(values: list[float], points=(50, 95, 99)) -> dict[str, float | None]:
    if not values:
        return {f"p{p}": None for p in points} | {"max": None, "count": 0}
    ordered = sorted(values)
    out: dict[str, Any] = {}
    for p in points:
        index = min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered) + 0.5)) - 1))
        out[f"p{p}"] = round(ordered[index], 2)
    out["max"] = round(ordered[-1], 2)
    out["count"] = len(ordered)
    return out


# --------------------------------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------------------------------

def machine(engine, redis_client) -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    with engine.connect() as db:
        pg = db.execute(text("SHOW server_version")).scalar()
        shared_buffers = db.execute(text("SHOW shared_buffers")).scalar()
    kafka = "unknown"
    jars = sorted((ROOT / ".cache/kafka/lib").glob("kafka-clients-*.jar"))
    if jars:
        kafka = re.sub(r"^kafka-clients-(.*)\.jar$", r"\1", jars[-1].name)
    import confluent_kafka
    return {
        "cpu_model": model, "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(), "os": platform.platform(), "python": platform.python_version(),
        "postgresql": pg, "postgresql_shared_buffers": shared_buffers,
        "redis": redis_client.info("server").get("redis_version"), "kafka": kafka,
        "confluent_kafka": confluent_kafka.version()[0], "librdkafka": confluent_kafka.libversion()[0],
        "load_average_at_start": os.getloadavg(),
    }


def tmpdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def _label(p: psutil.Process, clients: dict[int, str] | None = None) -> str:
    try:
        cmd = p.cmdline()
    except psutil.Error:
        return "?"
    if not cmd:
        return p.name()
    text_ = " ".join(cmd)
    if p.name() == "postgres" or "postgres" in cmd[0]:
        return _postgres_label(text_, clients)
    for key in ("gunicorn", "outbox_relay", "cache_worker", "pytest", "wrk", "pgbench"):
        if key in text_:  # this tree's, or another checkout's on the same machine
            return key if _cwd(p) == ROOT else f"{key} (elsewhere)"
    for key in ("kafka", "redis-server"):
        if key in text_:
            return key
    return p.name()


def _cwd(p: psutil.Process) -> Path | None:
    try:
        return Path(p.cwd())
    except psutil.Error:
        return None


_BACKEND = re.compile(r"^postgres: \S+ (\S+) (?:\S+\((\d+)\)|\[local\])")
# A walsender's title names its user and client, not its database: `postgres: walsender quiz 127.0.0.1(5)`.
_WALSENDER = re.compile(r"^postgres: walsender \S+ \S+\((\d+)\)")


def _postgres_label(cmdline: str, clients: dict[int, str] | None = None) -> str:
    """A backend of the bench database (`postgres for <its client>`, the client found by the TCP port the
    backend's title names), of another database (other work on the same server), or the server's own
    processes shared by all (postmaster, checkpointer, WAL writer, autovacuum, walsenders)."""
    walsender = _WALSENDER.match(cmdline)
    if walsender is not None:  # a streaming relay's (RELAY_WAL_READ=stream) when its client is ours
        client = (clients or {}).get(int(walsender[1]))
        return f"postgres for {client}" if client else "postgres (server)"
    backend = _BACKEND.match(cmdline)
    if backend is None:
        return "postgres (server)"
    if backend[1] != BENCH_DATABASE:
        return "postgres (other databases)"
    client = (clients or {}).get(int(backend[2] or 0))
    return f"postgres for {client}" if client else "postgres"


def _clients_by_port() -> dict[int, str]:
    """The local TCP port of each connection a process of this machine holds -> the process's label."""
    labels: dict[int, str] = {}
    by_pid: dict[int, str] = {}
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.Error:
        return labels
    for c in connections:
        if c.pid and c.raddr and c.laddr:
            if c.pid not in by_pid:
                try:
                    by_pid[c.pid] = _label(psutil.Process(c.pid))
                except psutil.Error:
                    continue
            labels[c.laddr.port] = by_pid[c.pid]
    return labels


class ProcessCpu:
    """CPU cores per kind of process on the whole machine over a window (who used the 2 cores): this
    tree's processes by name (`gunicorn`, `outbox_relay`, ...; `pytest` is the benchmark's own process,
    its load generator), the bench database's PostgreSQL backends by whom they serve (`postgres for
    gunicorn`; `postgres` when the client is gone), and what other work on
    the machine used apart (`... (elsewhere)`, `postgres (other databases)`)."""

    def __enter__(self) -> ProcessCpu:
        self.before = self._snapshot()
        self.t0 = time.monotonic()
        return self

    @staticmethod
    def _snapshot() -> dict[int, tuple[str, float]]:
        out = {}
        clients = _clients_by_port()
        for p in psutil.process_iter():
            try:
                t = p.cpu_times()
                out[p.pid] = (_label(p, clients), t.user + t.system)
            except psutil.Error:
                pass
        return out

    def __exit__(self, *exc: Any) -> None:
        after = self._snapshot()
        wall = time.monotonic() - self.t0
        totals: dict[str, float] = {}
        for pid, (label, cpu) in after.items():
            start = self.before.get(pid, (label, 0.0))[1]
            totals[label] = totals.get(label, 0.0) + max(0.0, cpu - start)
        self.cores = {k: round(v / wall, 2) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])[:16]
                      if v / wall >= 0.01}
        self.total_cores = round(sum(totals.values()) / wall, 2)


def profiling() -> bool:
    """BENCH_PROFILE=1: record py-spy profiles (collapsed stacks) of the measured processes."""
    return bool(os.environ.get("BENCH_PROFILE"))


def start_profile(pid: int, name: str, seconds: int, idle: bool = False) -> subprocess.Popen:
    """py-spy recording `pid` for `seconds` (or until sent SIGINT) into bench-results/profile-NAME.txt. A
    process started a moment ago may not have its interpreter up yet (py-spy then gives up at once): this
    waits, at most 10 s, until py-spy can read its stacks."""
    RESULTS_DIR.mkdir(exist_ok=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        dump = subprocess.run([PY_SPY, "dump", "--pid", str(pid)], capture_output=True, timeout=30)
        if dump.returncode == 0:
            break
        time.sleep(0.1)
    command = [PY_SPY, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "50",
               "--format", "raw", "--output", str(RESULTS_DIR / f"profile-{name}.txt")]
    if idle:
        command.append("--idle")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wrk_until_stopped(command: list[str], timeout_s: float) -> tuple[str, str]:
    """Run wrk until its script says it stopped (WRK_STOPPED), then interrupt it: it prints its totals."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    timer = threading.Timer(timeout_s, process.kill)
    timer.start()
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith("WRK_STOPPED"):
                process.send_signal(signal.SIGINT)
                break
        stdout, stderr = process.communicate()
    finally:
        timer.cancel()
    return "".join(lines) + stdout, stderr


def wrk(url: str, requests_file, duration_s: int, connections: int, stop_after: int | None = None) -> dict:
    """wrk -t1 over the requests of a file (wrk_requests.lua): totals, latency percentiles, statuses, CPU.
    `stop_after`: end once that many responses came back (within `duration_s`)."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", "--timeout", "10s",
               "-s", str(BENCH_DIR / "wrk_requests.lua"), url, "--", str(requests_file)]
    if stop_after is not None:
        command.append(str(stop_after))
    with CpuMeter() as cpu:
        if stop_after is None:
            out = subprocess.run(command, capture_output=True, text=True, timeout=duration_s + 120)
            stdout, stderr = out.stdout, out.stderr
        else:
            stdout, stderr = _wrk_until_stopped(command, duration_s + 120)
    match = re.search(r"WRK_JSON (\{.*\})", stdout)
    assert match, stdout + stderr
    data = json.loads(match.group(1))
    statuses = re.search(r"WRK_STATUSES (\{.*\})", stdout)
    seconds = data["duration_us"] / 1e6
    errors = data["connect"] + data["read"] + data["write"] + data["timeout"]
    ok = data["requests"] - data["status"] - errors
    return {"requests": data["requests"], "acknowledged": ok, "non_2xx": data["status"],
            "socket_errors": errors, "seconds": round(seconds, 2), "per_s": round(ok / seconds, 1),
            "latency_ms": {"mean": round(data["lat_mean"] / 1000, 2), "p50": data["lat_p50"] / 1000,
                           "p95": data["lat_p95"] / 1000, "p99": data["lat_p99"] / 1000,
                           "max": data["lat_max"] / 1000},
            "statuses": json.loads(statuses.group(1)) if statuses else None,
            "first_error": (re.search(r"WRK_FIRST_ERROR (.*)", stdout) or [None, None])[1],
            "cpu": cpu.report("child"), "command": " ".join(command)}
