"""The stack's PostgreSQL as a supervised program: initdb the first time, its configuration at every
start, the app's role and database, and the waits that say it answers. PostgreSQL refuses to run as
root: as root it runs as the `postgres` OS user (supervisord's `user`), its files where that user can
reach them.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from scripts.stack.programs import PRIORITY, StackError, wait_for
from scripts.stack.supervisor import ROOT, Policy, Program, Supervisor

# Written at every start: fsync and synchronous_commit stay on (an acknowledged answer survives a
# crash); wal_level=logical for the relay's change-data capture (its polling mode runs on it too).
PG_CONF = """# Written by scripts/stack at every start; edits are overwritten.
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{socket}'
max_connections = 300
shared_buffers = 256MB
work_mem = 8MB
maintenance_work_mem = 128MB
fsync = on
synchronous_commit = on
full_page_writes = on
wal_level = logical
max_replication_slots = 64
max_wal_senders = 16
wal_compression = on
wal_buffers = 16MB
min_wal_size = 256MB
max_wal_size = 2GB
checkpoint_timeout = 10min
checkpoint_completion_target = 0.9
random_page_cost = 1.1
effective_cache_size = 1GB
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
log_min_duration_statement = 1000
log_lock_waits = on
"""
# The app's role and database, also on a server made by an older version of the stack. The role
# creates and reads the relay's replication slot (REPLICATION), may CHECKPOINT (the growth benchmark)
# and create databases (the tests', the cluster's).
PG_ROLES = r"""
SELECT format('CREATE ROLE %I LOGIN CREATEDB REPLICATION', :'user')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'user') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN REPLICATION PASSWORD %L', :'user', :'pw') \gexec
SELECT format('GRANT pg_checkpoint TO %I', :'user')
 WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pg_checkpoint')
   AND NOT pg_has_role(:'user', 'pg_checkpoint', 'MEMBER') \gexec
SELECT format('GRANT pg_monitor TO %I', :'user')
 WHERE NOT pg_has_role(:'user', 'pg_monitor', 'MEMBER') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
"""
ROOT_USER = os.geteuid() == 0


def as_postgres(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    """PostgreSQL refuses to run as root: as root, run `command` as the `postgres` OS user (from /: the
    checkout may not be readable by it); as anyone else, as that user."""
    if ROOT_USER:
        command = ["runuser", "-u", "postgres", "--", *command]
    return subprocess.run(command, cwd="/", **kwargs)


def pg_bindir() -> Path:
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    if shutil.which("initdb"):
        return Path(shutil.which("initdb")).parent
    raise StackError("PostgreSQL is not installed (run: scripts/deps.sh)")


@dataclass
class Postgres:
    """The stack's PostgreSQL: data under `stack_dir`/pg, log in the run directory."""

    stack_dir: Path
    port: int
    user: str
    password: str
    database: str

    def __post_init__(self) -> None:
        self.bin = pg_bindir()

    def home(self) -> Path:
        """Normally `stack_dir`/pg (owned by postgres). When the postgres user cannot reach the checkout
        (e.g. under /root, 0700), or the socket path would pass the kernel's 107 bytes, the files live in
        postgres's home under a name of this checkout, linked from `stack_dir`/pg (never a chmod of the
        user's directories)."""
        link = self.stack_dir / "pg"
        if link.is_symlink():
            return link.resolve()
        if not link.is_dir():
            reachable = len(str(link / "sock" / f".s.PGSQL.{self.port}")) <= 100 and not (
                ROOT_USER
                and subprocess.run(
                    ["runuser", "-u", "postgres", "--", "test", "-x", str(self.stack_dir)], check=False
                ).returncode
            )
            if reachable:
                link.mkdir(parents=True)
            else:
                home = Path(pwd.getpwnam("postgres").pw_dir or "/var/lib/postgresql")
                alt = home / f"livequiz-{hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]}"
                alt.mkdir(parents=True, exist_ok=True)
                link.symlink_to(alt)
                print(
                    f"postgres: {self.stack_dir} is not reachable by the postgres user (or too deep for a "
                    f"socket); its files live in {alt} (linked from {link})"
                )
                return alt
        return link

    def program(self, run_dir: Path, policy: Policy) -> Program:
        """initdb the first time, the configuration at every start, then the server's program."""
        home = self.home()
        data, socket = home / "data", home / "sock"
        socket.mkdir(parents=True, exist_ok=True)
        if ROOT_USER:
            for path in (home, socket):
                shutil.chown(path, "postgres", "postgres")
        home.chmod(0o700)
        log = run_dir / "postgres.log"
        if not (data / "PG_VERSION").exists():
            print(f"postgres: initdb {data}")
            shutil.rmtree(data, ignore_errors=True)
            with log.open(
                "ab"
            ) as out:  # superuser `postgres` only over the socket (peer); TCP needs a password
                done = as_postgres(
                    [
                        str(self.bin / "initdb"),
                        "-D",
                        str(data),
                        "-U",
                        "postgres",
                        "-E",
                        "UTF8",
                        "--locale=C.UTF-8",
                        "--auth-local=peer",
                        "--auth-host=scram-sha-256",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    check=False,
                )
            if done.returncode:
                raise StackError(f"initdb failed; {log} ends:\n{Supervisor.tail(log)}")
            with (data / "postgresql.conf").open("a") as conf:
                conf.write("include_if_exists = 'livequiz.conf'\n")
        conf = data / "livequiz.conf"
        conf.write_text(PG_CONF.format(port=self.port, socket=socket))
        if ROOT_USER:
            shutil.chown(conf, "postgres", "postgres")
        # SIGINT is PostgreSQL's fast shutdown; the postmaster stops its backends itself.
        return Program(
            "postgres",
            [str(self.bin / "postgres"), "-D", str(data)],
            policy,
            user="postgres" if ROOT_USER else None,
            directory=Path("/"),
            stop_signal="INT",
            stop_wait_s=60,
            group_signals=False,
            priority=PRIORITY["postgres"],
            ports={self.port: "POSTGRES_PORT"},
        )

    def ready(self, supervisor: Supervisor) -> None:
        """Until it accepts connections; then the app's role and database, and a query as that role."""
        isready = [str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        wait_for(
            lambda: subprocess.run(isready, check=False).returncode == 0,
            "PostgreSQL accepting connections",
            supervisor,
            ["postgres"],
            60,
            every_s=0.5,
        )
        self.roles()
        wait_for(
            lambda: self.psql("-c", "SELECT 1").stdout.strip() == "1",
            f"a query as {self.user} on {self.database}",
            supervisor,
            ["postgres"],
            30,
            every_s=0.5,
        )

    def psql(self, *args: str, sql: str | None = None) -> subprocess.CompletedProcess:
        """psql over TCP as the app's role (as the app connects), `sql` on its standard input."""
        login = ["-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", self.database]
        return subprocess.run(
            [str(self.bin / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", *login, *args],
            input=sql,
            env={**os.environ, "PGPASSWORD": self.password},
            capture_output=True,
            text=True,
            check=False,
        )

    def roles(self) -> None:
        socket = self.home() / "sock"
        done = as_postgres(
            [
                str(self.bin / "psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(socket),
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                f"user={self.user}",
                "-v",
                f"pw={self.password}",
                "-v",
                f"db={self.database}",
            ],
            input=PG_ROLES,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            raise StackError(
                f"creating the role {self.user} and database {self.database} failed: {done.stderr}"
            )
