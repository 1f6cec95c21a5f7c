"""Engine and session factory shared by every process."""
from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

# Rows a retention purge deletes in one statement (the outbox's default partition, old submission ids):
# short transactions, few locks held at a time.
PURGE_BATCH = 5000


@lru_cache(maxsize=8)
def get_engine(database_url: str, pool_size: int = 20) -> Engine:
    """One engine per URL and process; pooled connections are reused across requests.

    No ping before each checkout (a round trip per request): a connection found broken is discarded
    with the whole pool, and the next checkout opens a fresh one. SQL parameters never appear in
    error messages (they hold what users typed), so no log line can carry them.
    """
    return create_engine(
        database_url,
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5, "application_name": "livequiz"},
    )


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
