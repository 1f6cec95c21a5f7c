"""The polling relay's wake-up: LISTEN on the channel the outbox's insert trigger notifies (migration
0001's `pg_notify('outbox_events', '')`), over a connection of its own."""
from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
from sqlalchemy.engine import make_url

NOTIFY_CHANNEL = "outbox_events"


def libpq_url(database_url: str) -> str:
    """The SQLAlchemy URL as a plain libpq URI, for the LISTEN connection."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class OutboxListener:
    """LISTEN on `outbox_events` over a dedicated autocommit connection; reconnects lazily."""

    def __init__(self, database_url: str, channel: str = NOTIFY_CHANNEL):
        self.conninfo = libpq_url(database_url)
        self.channel = channel
        self._conn: psycopg.Connection | None = None

    def connect(self) -> bool:
        """True when newly connected: notifications may have been missed, so claim at once."""
        if self._conn is not None and not self._conn.closed:
            return False
        self._conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5,
                                     application_name="outbox_relay.listen")
        self._conn.execute(f'LISTEN "{self.channel}"')
        return True

    def wait(self, timeout_s: float, stopping: Callable[[], bool]) -> None:
        """Return on a notification, once `stopping()`, or after `timeout_s`; raises if PostgreSQL is gone."""
        if self.connect():
            return
        deadline = time.monotonic() + timeout_s
        # Short slices: a signal handler only sets a flag, and it must be seen within a moment.
        while not stopping():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                woken = any(True for _ in self._conn.notifies(timeout=min(remaining, 0.2), stop_after=1))
                if woken:
                    # Drain what else is queued: one claim serves them all.
                    for _ in self._conn.notifies(timeout=0.001):
                        pass
                    return
            except psycopg.Error:
                self.close()
                raise

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None
