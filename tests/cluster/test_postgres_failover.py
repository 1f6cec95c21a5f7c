"""The PostgreSQL leader of the cluster dies (its Patroni and its PostgreSQL, SIGKILL) while sessions are
played through the balancer: Patroni promotes the synchronous standby, pg-lb sends every connection to
it, the writes resume, and no acknowledged write is lost or doubled (audit.py).

Bounds come from the configuration the tier runs with (scripts/stack/patroni.py); a wait that runs out
fails the test. The time from the kill to the first write acknowledged through pg-lb is printed.
"""
from __future__ import annotations

import re
import threading
import time
import uuid

import psycopg

from app.core.outbox import engine_slot_name
from tests.cluster.audit import recorded_once, wait_boards_equal, wait_caught_up, wait_published
from tests.cluster.game import Game, playing
from tests.helpers import wait_until

# Patroni's ttl (the dead leader's key expires) + loop_wait (the standby's next look) + HAProxy's
# `fall 2` checks `inter 1s`, with room for a loaded machine.
FAILOVER_S = 30 + 10 + 2 + 60


class Prober:
    """Writes a row a time through pg-lb on a connection of its own (reconnecting after any error) and
    keeps each acknowledged row's id, the moment it was acknowledged and the port of the node that did."""

    def __init__(self, conninfo: str, table: str) -> None:
        self.conninfo, self.table = conninfo, table
        self.acknowledged: list[tuple[float, str, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=2) as conn:
                    while not self.stop.is_set():
                        row = str(uuid.uuid4())
                        port = conn.execute(f"INSERT INTO {self.table} (id) VALUES (%s) "
                                            "RETURNING inet_server_port()", (row,)).fetchone()[0]
                        self.acknowledged.append((time.monotonic(), row, port))
                        time.sleep(0.02)
            except psycopg.Error:
                time.sleep(0.1)

    def acknowledged_by(self, port: int) -> float | None:
        """When the first write acknowledged by the node on `port` was."""
        return next((at for at, _, by in self.acknowledged if by == port), None)


def republished(stack) -> list[int]:
    """The counts of events the stack's relays republished on a new leader without their slot (their
    logs: one line a republish)."""
    return [int(n) for name in ("relay-1", "relay-2")
            for n in re.findall(r"republished (\d+) events of slot", stack.log_of(name))]


def slots_dropped(engines, slot: str) -> int:
    """How many times the cluster's Patroni nodes dropped replication slot `slot` (their logs)."""
    line = f"Dropped unknown replication slot '{slot}'"
    return sum(path.read_text(errors="replace").count(line) for path in engines.run_dir.glob("pg-*.log"))


def test_the_postgres_leader_dies_the_synchronous_standby_takes_over_and_nothing_acknowledged_is_lost(
        stack, engine, redis_client, engines):
    leader = engines.postgres_leader()
    standby = next(name for name, m in engines.postgres_members().items() if m["role"] == "sync_standby")
    assert leader and standby, engines.postgres_members()
    timeline = engines.postgres_members()[leader]["timeline"]
    conninfo = engine.url.render_as_string(hide_password=False).replace("postgresql+psycopg", "postgresql")
    table = f"failover_probe_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id uuid PRIMARY KEY)")
    prober = Prober(conninfo, table)
    slot = engine_slot_name(engine)
    dropped = slots_dropped(engines, slot)
    games = [Game(stack.base_url) for _ in range(2)]
    prober.thread.start()
    try:
        with playing(games):
            wait_until(lambda: all(g.played >= 2 for g in games), "the games did not play 2 questions")
            with psycopg.connect(conninfo, autocommit=True) as conn:
                retained, marked = conn.execute("SELECT count(*), count(published_at) FROM events").fetchone()
                killed_wall = conn.execute("SELECT clock_timestamp()").fetchone()[0]
            engines.crash_postgres(leader)
            killed_at = time.monotonic()
            # Only the synchronous standby holds every acknowledged commit: it is the one promoted.
            wait_until(lambda: engines.postgres_leader() == standby,
                       f"{standby} did not take over from {leader}", timeout_s=FAILOVER_S)
            first = wait_until(lambda: prober.acknowledged_by(engines.postgres_port(standby)),
                               f"no write acknowledged by {standby} through pg-lb", timeout_s=FAILOVER_S)
            played = [g.played for g in games]
            wait_until(lambda: all(g.played >= p + 2 for g, p in zip(games, played)),
                       "the games did not play 2 more questions after the failover")
    finally:
        prober.stop.set()
        prober.thread.join(30)
        engines.restore()
    print(f"PostgreSQL failover: first write through pg-lb {first - killed_at:.1f} s after the kill "
          f"({leader} -> {standby})")
    assert engines.postgres_members()[standby]["timeline"] > timeline
    with psycopg.connect(conninfo, autocommit=True) as conn:
        stored = {str(row[0]) for row in conn.execute(f"SELECT id FROM {table}")}
        conn.execute(f"DROP TABLE {table}")
    acknowledged = {row for _, row, _ in prober.acknowledged}
    assert acknowledged and acknowledged - stored == set()
    wait_published(engine, games, stack.config.relay_mode)
    wait_caught_up(stack.config)
    for game in games:
        recorded_once(engine, game)
    wait_boards_equal(engine, redis_client, games)
    # wal mode: the new leader has the relay's capture row, not its slot; the relay republishes from the
    # replicated fence, not every retained event.
    if stack.config.relay_mode == "wal":
        count = sum(wait_until(lambda: republished(stack), "no relay republished from its fence"))
        with psycopg.connect(conninfo, autocommit=True) as conn:
            # wal mode marks only what a backfill or a republish published: this one's are the new marks.
            marks, before_kill = conn.execute(
                "SELECT count(published_at), count(*) FILTER (WHERE published_at IS NOT NULL AND "
                "created_at < %s) FROM events", (killed_wall,)).fetchone()
        print(f"events republished after the failover: {count}, {before_kill} of them written before "
              f"the kill (of {retained} retained then)")
        assert marks - marked == count and before_kill < retained
    # The relay's slot is its own: Patroni (which drops the slots it does not manage) left it alone.
    assert slots_dropped(engines, slot) == dropped
