"""Engine and session factory shared by every process."""
from __future__ import annotations

import os
from functools import lru_cache

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

# Rows a retention purge deletes in one statement (the outbox's default partition, old submission ids):
# short transactions, few locks held at a time.
PURGE_BATCH = 5000
# A server that refuses to write because it runs as a standby (read_only_sql_transaction).
READ_ONLY_SQLSTATE = "25006"


@lru_cache(maxsize=8)
def get_engine(database_url: str, pool_size: int = 20, prepared: bool = True,
               pool_timeout_s: float = 30.0) -> Engine:
    """One engine per URL and process; pooled connections are reused across requests.

    No ping before each checkout (a round trip per request): a connection found broken is discarded
    with the whole pool, and the next checkout opens a fresh one. SQL parameters never appear in
    error messages (they hold what users typed), so no log line can carry them. A checkout that waits
    `pool_timeout_s` for a connection fails (a TimeoutError: the web's 503). Without `prepared`
    (DATABASE_PREPARED_STATEMENTS off) psycopg never prepares a statement on the server: a pooler in
    transaction mode may run the next transaction on a connection that does not have it.
    """
    connect_args: dict = {"connect_timeout": 5}
    if not prepared:
        connect_args["prepare_threshold"] = None
    engine = create_engine(
        database_url,
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=pool_timeout_s,
        pool_recycle=1800,
        connect_args=connect_args,
    )
    event.listen(engine, "do_connect", _name_connection)
    event.listen(engine, "handle_error", _standby_is_a_lost_connection)
    return engine


def application_name(pid: int) -> str:
    return f"livequiz pid {pid}"


def _name_connection(_dialect, _record, _args, params: dict) -> None:
    """Each connection names the process that opened it (at connect time: gunicorn's workers are forks).
    Behind a balancer (the cluster's pg-lb) every connection comes from the balancer's address and port,
    so pg_stat_activity's application_name is what tells which process holds a lock or a transaction."""
    params["application_name"] = application_name(os.getpid())


def _standby_is_a_lost_connection(context: ExceptionContext) -> OperationalError | None:
    """A standby's refusal to write means the connection reached a node that is not the primary: behind a
    failover manager's balancer (the cluster's pg-lb), a new leader whose Patroni holds the leader key
    before its PostgreSQL has finished promotion, or a former leader demoted. Handled as a lost
    connection: the pool's connections are dropped (the next ones go where the balancer sends them now)
    and the error is an OperationalError, which every process takes for "PostgreSQL is unavailable for
    now" (the web's 503, a consumer's retry), never a fault of the request."""
    if getattr(context.original_exception, "sqlstate", None) != READ_ONLY_SQLSTATE:
        return None
    context.is_disconnect = True
    return OperationalError(context.statement, context.parameters, context.original_exception,
                            hide_parameters=True, connection_invalidated=True)


def read_connection(engine: Engine) -> Connection:
    """A pooled connection for reads of one statement each: no BEGIN before it nor COMMIT or ROLLBACK
    after (a statement is its own snapshot), one round trip instead of three. For the reads every join
    makes (who may enter a room, a token's revocation) in a storm of them."""
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
