"""The PostgreSQL leader of the cluster fails while sessions are played and scores are written through the
test stack's balancer, and a prober writes straight through pg-lb; what every failover test holds the
cluster to afterwards (`fail_over`).

After the fault: Patroni's synchronous standby (the one node that holds every acknowledged commit) leads
on a later timeline, every acknowledged answer, score and probe row is in PostgreSQL once, no write got a
500 (a 503 or a lost connection is "send it again"), every event of the sessions and the board is
published and on Kafka in each aggregate's order, every board in Redis equals PostgreSQL, the relay's
slot was left alone by Patroni, and in wal mode the relay republished only from its replicated fence (the
bound: docs/architecture.md). The time from the fault to the first write the new leader acknowledged
through pg-lb is reported at the end of the run (conftest.py's `REPORT`).
"""
from __future__ import annotations

import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import psycopg
import requests
from sqlalchemy import text

from app.core.outbox import engine_slot_name
from app.leaderboards.board.verify import compare_period
from tests.chaos.client import RETRYABLE
from tests.cluster.audit import (
    in_kafka_in_order,
    recorded_once,
    wait_boards_equal,
    wait_caught_up,
    wait_published,
)
from tests.cluster.engines import Restoring
from tests.cluster.game import Game, Undecided, playing
from tests.helpers import WAIT_S, Api, HttpClient, wait_until

# Patroni's ttl (the dead leader's key expires) + loop_wait (the standby's next look) + HAProxy's
# `fall 2` checks `inter 1s`, with room for a loaded machine.
FAILOVER_S = 30 + 10 + 2 + 60

# What the run reports at its end (conftest.py prints it whatever pytest captured).
REPORT: list[str] = []


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


class Scorer:
    """Writes scores through the balancer, one request at a time: +1 for one of five players of an
    `increment` board, each under a submission id of its own, sent again with that id until decided (a
    retry gets the original result). Keeps the acknowledged ids and every status it got."""

    def __init__(self, base_url: str) -> None:
        self.api = Api(HttpClient(base_url))
        self.owner = self.api.host()
        self.board_id = "b" + uuid.uuid4().hex[:12]
        self.api.post("/api/v1/leaderboards", {"id": self.board_id, "name": "Failover", "sort_order": "desc",
                                               "update_mode": "increment", "reset_period": "never"},
                      token=self.owner.token, expect=201)
        self.acknowledged: set[str] = set()
        self.statuses: Counter = Counter()
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def submit(self, n: int) -> None:
        submission = str(uuid.uuid4())
        body = {"leaderboard_id": self.board_id, "player_id": f"player-{n % 5}", "score": 1,
                "submission_id": submission}
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                response = self.api.post("/api/v1/scores", body, token=self.owner.token)
                self.statuses[response.status_code] += 1
                if response.status_code in (200, 201):
                    self.acknowledged.add(submission)
                    return
                if response.status_code not in RETRYABLE:
                    raise AssertionError((response.status_code, response.get_json()))
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise Undecided(f"POST /api/v1/scores undecided after {WAIT_S:.0f} s")
            time.sleep(0.2)

    def run(self) -> None:
        n = 0
        try:
            while not self.stop.is_set():
                self.submit(n)
                n += 1
                time.sleep(0.05)
        except BaseException as exc:  # noqa: BLE001 - raised again by `fail_over`
            self.error = exc


def scores_recorded_once(engine, scorer: Scorer) -> None:
    """Every acknowledged submission is stored, none other (each one sent was decided), and the board's
    total counts each once."""
    with engine.connect() as db:
        stored = {row[0] for row in db.execute(text(
            "SELECT submission_id FROM score_submissions WHERE leaderboard_id = :b"), {"b": scorer.board_id})}
        total = db.execute(text("SELECT coalesce(sum(score), 0) FROM leaderboard_entries "
                                "WHERE leaderboard_id = :b AND period = 'all'"),
                           {"b": scorer.board_id}).scalar()
    assert scorer.acknowledged, "no score was acknowledged"
    assert scorer.acknowledged - stored == set(), "acknowledged scores are missing from PostgreSQL"
    assert stored == scorer.acknowledged, "scores nobody saw acknowledged are stored"
    assert total == len(stored), f"the board counts {total} points for {len(stored)} submissions"


def nothing_lost_or_doubled(stack, engine, redis_client, games: list[Game], scorer: Scorer, mode: str):
    """The fault tests' audit: every event of the games and the scorer's board published (by the relay of
    `mode`) and on Kafka in order, the worker caught up, every acknowledged answer and score recorded once,
    and every board in Redis equal to PostgreSQL. Returns the events and their copies on Kafka."""
    rows = wait_published(engine, games, mode, boards=(scorer.board_id,))
    found = in_kafka_in_order(stack.config, rows)
    wait_caught_up(stack.config)
    for game in games:
        recorded_once(engine, game)
    scores_recorded_once(engine, scorer)
    wait_boards_equal(engine, redis_client, games)
    wait_until(lambda: compare_period(engine, redis_client, scorer.board_id, "all") == [],
               f"the board {scorer.board_id} did not come to equal PostgreSQL")
    return rows, found


def republished(stack) -> list[int]:
    """The counts of events the stack's relays republished on a new leader without their slot (their
    logs: one line a republish)."""
    return [int(n) for name in ("relay-1", "relay-2")
            for n in re.findall(r"republished (\d+) events of slot", stack.log_of(name))]


def slots_dropped(engines, slot: str) -> int:
    """How many times the cluster's Patroni nodes dropped replication slot `slot` (their logs)."""
    line = f"Dropped unknown replication slot '{slot}'"
    return sum(path.read_text(errors="replace").count(line) for path in engines.run_dir.glob("pg-*.log"))


@dataclass
class Failover:
    old: str
    new: str
    first_write_s: float
    republished: int | None  # wal mode: events the relays republished from their fence
    retained: int = 0  # events retained in the outbox at the fault
    copies: int = 0  # the games' and the board's events found on Kafka more than once


Fault = Callable[[str, str], AbstractContextManager]


def conninfo_of(engine) -> str:
    """psycopg's connection string of `engine` (pg-lb on the cluster)."""
    return engine.url.render_as_string(hide_password=False).replace("postgresql+psycopg", "postgresql")


def crash(engines) -> Fault:
    """The leader crash: its Patroni and its PostgreSQL SIGKILLed together; once the test is done with the
    new leader, the old node starts again, as a replica of the new one (pg_rewind), while the test's audit
    runs (the context gives the `Restoring` that `fail_over` waits for)."""
    @contextmanager
    def crashed(leader: str, _standby: str):
        engines.crash_postgres(leader)
        restoring = Restoring(engines)
        try:
            yield restoring
        finally:
            restoring.start()

    return crashed


class Load:
    """One stack's writes across the failover: two games played and a scorer through its balancer, and
    what its database and relays said before the fault."""

    def __init__(self, stack, engine, engines) -> None:
        self.stack, self.engine = stack, engine
        self.mode = stack.config.relay_mode
        self.scorer = Scorer(stack.base_url)
        self.slot = engine_slot_name(engine)
        self.dropped, self.before = slots_dropped(engines, self.slot), sum(republished(stack))
        self.games = [Game(stack.base_url) for _ in range(2)]
        self.retained = self.marked = 0
        self.fault_wall = None

    def progress(self) -> tuple[list[int], int]:
        """The questions each game has played, and the scores acknowledged."""
        return [g.played for g in self.games], len(self.scorer.acknowledged)

    def beyond(self, progress: tuple[list[int], int], questions: int, scores: int) -> bool:
        """Whether each game has played `questions` more, and `scores` more were acknowledged, since
        `progress`."""
        played, scored = progress
        return (all(g.played >= p + questions for g, p in zip(self.games, played))
                and len(self.scorer.acknowledged) >= scored + scores)

    def at_fault(self) -> None:
        """The outbox as the fault finds it (events retained, those marked published) and the server's
        clock then."""
        with psycopg.connect(conninfo_of(self.engine), autocommit=True) as conn:
            self.retained, self.marked = conn.execute(
                "SELECT count(*), count(published_at) FROM events").fetchone()
            self.fault_wall = conn.execute("SELECT clock_timestamp()").fetchone()[0]


def fail_over(stack, engine, redis_client, engines, fault: Fault, what: str, beside=()) -> Failover:
    """`fault(leader, standby)` (a context: entered, the leader fails; left, the fault ends) under load,
    then every check of the top. The synchronous standby must take over. `beside`: (stack, engine) of more
    stacks on the cluster (another relay mode), loaded through the same fault and held to the same checks.
    Returns the first stack's figures."""
    def sync_standby() -> str | None:
        return next((n for n, m in engines.postgres_members().items() if m["role"] == "sync_standby"), None)

    # After an earlier fault Patroni names the next synchronous standby at its next loop.
    standby = wait_until(sync_standby, "no synchronous standby", timeout_s=FAILOVER_S)
    leader = engines.postgres_leader()
    members = engines.postgres_members()
    assert leader and standby, members
    timeline = members[leader]["timeline"]
    conninfo = conninfo_of(engine)
    table = f"failover_probe_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id uuid PRIMARY KEY)")
    prober = Prober(conninfo, table)
    loads = [Load(s, e, engines) for s, e in [(stack, engine), *beside]]
    writers = [prober] + [load.scorer for load in loads]
    ending = None
    for writer in writers:
        writer.thread.start()
    try:
        try:
            with playing([game for load in loads for game in load.games]):
                start = ([0, 0], 0)
                wait_until(lambda: all(load.beyond(start, 2, 5) for load in loads),
                           "the games did not play 2 questions, or 5 scores were not acknowledged")
                for load in loads:
                    load.at_fault()
                at = time.monotonic()  # a switchover's command returns once done: the clock starts before
                with fault(leader, standby) as ending:
                    # Only the synchronous standby holds every acknowledged commit: it is the one promoted.
                    wait_until(lambda: engines.postgres_leader() == standby,
                               f"{standby} did not take over from {leader} ({what})", timeout_s=FAILOVER_S)
                    first = wait_until(lambda: prober.acknowledged_by(engines.postgres_port(standby)),
                                       f"no write acknowledged by {standby} through pg-lb",
                                       timeout_s=FAILOVER_S)
                    then = [load.progress() for load in loads]
                    wait_until(lambda: all(load.beyond(p, 2, 5) for load, p in zip(loads, then)),
                               "the games did not play 2 more questions, or 5 more scores were not "
                               "acknowledged, after the failover")
        finally:
            for writer in writers:
                writer.stop.set()
                writer.thread.join(WAIT_S)
        for load in loads:
            if load.scorer.error is not None:
                raise load.scorer.error
        results = audit(loads, redis_client, engines, conninfo, table, prober, (leader, standby, timeline),
                        first - at, what)
    finally:
        if ending is not None:  # a crash's old node starting again
            ending.wait()
    return results[0]


def audit(loads: list[Load], redis_client, engines, conninfo: str, table: str, prober: Prober,
          roles: tuple[str, str, int], first_write_s: float, what: str) -> list[Failover]:
    """`fail_over`'s checks once the writers stopped: the new leader's timeline (`roles`: the old leader, the
    standby that took over, the old timeline), the probe rows, then each stack's writes and events (the
    stacks share the run's Redis keys)."""
    leader, standby, timeline = roles
    assert engines.postgres_members()[standby]["timeline"] > timeline
    with psycopg.connect(conninfo, autocommit=True) as conn:
        stored = {str(row[0]) for row in conn.execute(f"SELECT id FROM {table}")}
        conn.execute(f"DROP TABLE {table}")
    acknowledged = {row for _, row, _ in prober.acknowledged}
    assert acknowledged and acknowledged - stored == set(), "acknowledged probe rows are lost"
    results = []
    for load in loads:
        stack, engine = load.stack, load.engine
        engine.dispose()  # the pool's connections to the old leader are dead: the audits open new ones
        result = Failover(leader, standby, first_write_s, None, load.retained)
        statuses = sum((g.statuses for g in load.games), load.scorer.statuses)
        assert statuses[500] == 0, f"writes during the failover got a 500 ({load.mode}): {dict(statuses)}"
        rows, found = nothing_lost_or_doubled(stack, engine, redis_client, load.games, load.scorer,
                                              load.mode)
        result.copies = sum(len(found[row.id]) - 1 for row in rows)
        REPORT.append(f"PostgreSQL {what} ({leader} -> {standby}, RELAY_MODE={load.mode}): first write "
                      f"through pg-lb {first_write_s:.1f} s after the fault; the writes' statuses "
                      f"{dict(sorted(statuses.items()))}")
        print(REPORT[-1])
        if load.mode == "wal":
            result.republished = republished_within_bound(stack, conninfo_of(engine), load.before,
                                                          load.marked, load.retained, load.fault_wall)
        elif load.mode == "poll":  # no slot to lose: nothing is republished
            assert sum(republished(stack)) == load.before
        # The relay's slot is its own: Patroni (which drops the slots it does not manage) left it alone.
        assert slots_dropped(engines, load.slot) == load.dropped
        results.append(result)
    return results


def republished_within_bound(stack, conninfo: str, before: int, marked: int, retained: int,
                             fault_wall) -> int:
    """wal mode: the new leader has the relay's capture row, not its slot; the relay republishes from the
    replicated fence, not every retained event. wal mode marks only what a backfill or a republish
    published, so this republish's rows are the marks made since the fault."""
    count = wait_until(lambda: sum(republished(stack)) - before, "no relay republished from its fence")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        marks, before_fault = conn.execute(
            "SELECT count(published_at), count(*) FILTER (WHERE published_at IS NOT NULL AND "
            "created_at < %s) FROM events", (fault_wall,)).fetchone()
    before_fault -= marked  # every row marked at the fault was written before it: the new marks are these
    REPORT.append(f"  {count} events republished: {before_fault} written before the fault (of {retained} "
                  "retained then), the rest on the new leader before the relay had made its slot")
    print(REPORT[-1])
    assert marks - marked == count and before_fault < retained
    return count
