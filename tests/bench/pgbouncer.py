"""A pgbouncer of the cluster bench's own, in transaction mode in front of pg-lb, for the webs alone
(`BENCH_CLUSTER_COMPARE=pgbouncer make bench-cluster`, tests/bench/cluster_writes.py): whether it pays off
in front of the Patroni leader is measured there, not assumed; the cluster's topology has none.

What may go through it: the webs, whose every piece of session state is a transaction's (`SET LOCAL`,
`SET TRANSACTION`), once psycopg prepares no statement on the server (DATABASE_PREPARED_STATEMENTS off:
Debian's pgbouncer 1.18 does not carry a prepared statement between server connections). What may not:
the relay, which holds a session's advisory lock (its leadership), LISTENs for the outbox's inserts and,
in wal mode, reads its slot over a replication connection; it stays on pg-lb.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from scripts.stack.postgres import ROOT_USER
from scripts.stack.programs import PRIORITY
from scripts.stack.supervisor import APP, Program
from tests.helpers import free_port, wait_until

# Server connections per database and role: the webs' 16 requests in flight fit in it.
POOL_SIZE = 20


def pgbouncer(database_url: str) -> tuple[Program, str]:
    """pgbouncer (a supervisor program, run as `postgres` when root: it refuses root) forwarding to the host
    and port of `database_url`; and the SQLAlchemy URL that reaches the same database through it."""
    url = make_url(database_url)
    home = Path(tempfile.mkdtemp(prefix="livequiz-pgbouncer-"))
    port = free_port()
    (home / "userlist.txt").write_text(f'"{url.username}" "{url.password}"\n')
    (home / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={url.host} port={url.port}\n\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = scram-sha-256\nauth_file = {home / 'userlist.txt'}\n"
        f"pool_mode = transaction\ndefault_pool_size = {POOL_SIZE}\nmax_client_conn = 2000\n"
        "ignore_startup_parameters = extra_float_digits\n"
        "logfile =\npidfile =\nlog_connections = 0\nlog_disconnections = 0\n"
    )
    for path in (home / "userlist.txt", home / "pgbouncer.ini"):
        path.chmod(0o600)
    if ROOT_USER:
        for path in (home, home / "userlist.txt", home / "pgbouncer.ini"):
            shutil.chown(path, "postgres", "postgres")
    program = Program("pgbouncer", ["pgbouncer", str(home / "pgbouncer.ini")], APP,
                      user="postgres" if ROOT_USER else None, directory=Path("/"),
                      priority=PRIORITY["postgres"] + 5, ports={port: "pgbouncer"})
    return program, url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def wait_answers(database_url: str) -> None:
    """Until a query through it is answered by the database behind it."""
    conninfo = database_url.replace("postgresql+psycopg", "postgresql")

    def answers() -> bool:
        try:
            with psycopg.connect(conninfo, connect_timeout=2, prepare_threshold=None) as conn:
                return conn.execute("SELECT 1").fetchone() == (1,)
        except psycopg.Error:
            return False

    wait_until(answers, "pgbouncer did not answer", timeout_s=60, every_s=0.5)
