"""Debezium (RELAY_MODE=debezium) across a real Patroni failover: the PostgreSQL leader dies (its Patroni and
its PostgreSQL, SIGKILL) while sessions are played and scores written through the balancer. The promoted
standby has the replicated capture row (`outbox_capture`) but not Debezium's slot (PostgreSQL 15 carries
no logical slot to a standby); the connector's task, on one of the run's two distributed Connect workers,
reconnects through pg-lb, finds its stored position gone, makes its slot again and snapshots
(`snapshot.mode` when_needed) the rows from the replicated fence on, which the relay process keeps as
`republish_from` until the new slot streams (outbox_relay/debezium.py, DebeziumHousekeeper).

After it, the cluster is held to the failover tests' audit (tests/cluster/failover.py: nothing lost, nothing
doubled, every board equal), and: the connector's task runs, its slot is on the new leader and in use, the
kept fence is released, and the relay processes counted the snapshot's rows
(`relay_failover_republished_total`), fewer than the outbox retained at the fault. The run's summary gives
the time from the kill to the slot's return and to the fence's release, the rows counted, and the events
found twice on Kafka.

`make test-cluster` runs this module on its own with RELAY_MODE=debezium (scripts/stack/cluster_runs.py).
"""
from __future__ import annotations

import re
import threading
import time
from collections import Counter
from contextlib import contextmanager

import psycopg
import pytest
import requests
from sqlalchemy import text

from app.core.config import load_config
from app.core.outbox import engine_slot_name, published_condition
from outbox_relay import debezium
from tests.cluster.failover import REPORT, conninfo_of, crash, fail_over
from tests.helpers import WAIT_S, wait_until
from tests.integration.relay.support import by_event_id, insert_events, read_topic

if load_config().relay_mode != "debezium":
    pytest.fail("tests/cluster/test_debezium_failover.py runs with RELAY_MODE=debezium (make test-cluster "
                "runs it so)", pytrace=False)

_SLOT_ON_LEADER = """
    SELECT inet_server_port(),
           (SELECT active FROM pg_replication_slots WHERE slot_name = %(slot)s),
           (SELECT republish_from FROM outbox_capture WHERE slot_name = %(slot)s)"""
# Events delivered, and counted as published, before the games start: what a snapshot of every retained
# row would send again, and one from the fence must not.
BACKLOG = 2000
_COUNTER = re.compile(r"^relay_failover_republished_total (\S+)$", re.M)
_LOGGED = re.compile(r"its snapshot republished at most (\d+) events")


def published_among(engine, ids: list[str]) -> int:
    condition, params = published_condition(engine, "debezium")
    with engine.connect() as db:
        return db.execute(text("SELECT count(*) FROM events WHERE id = ANY(CAST(:ids AS uuid[])) AND "
                               + condition), {"ids": ids, **params}).scalar_one()


def republished_counted(stack) -> int:
    """`relay_failover_republished_total` of the stack's relay processes (the one leading counts)."""
    total = 0.0
    for name in ("relay-1", "relay-2"):
        body = requests.get(f"http://127.0.0.1:{stack.envs[name]['RELAY_METRICS_PORT']}/metrics",
                            timeout=5).text
        total += sum(float(n) for n in _COUNTER.findall(body))
    return int(total)


class SlotWatch:
    """From the kill on, what pg-lb's leader says of Debezium's slot: when the slot is first in use on the
    new leader (`port`), and when its kept fence, once seen kept there, was released."""

    def __init__(self, conninfo: str, slot: str, port: int) -> None:
        self.conninfo, self.slot, self.port = conninfo, slot, port
        self.started = time.monotonic()
        self.slot_active: float | None = None
        self.kept_seen = False
        self.released: float | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set() and self.released is None:
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=2) as conn:
                    while not self.stop.is_set() and self.released is None:
                        port, active, kept = conn.execute(_SLOT_ON_LEADER, {"slot": self.slot}).fetchone()
                        now = time.monotonic()
                        if port == self.port:
                            if active and self.slot_active is None:
                                self.slot_active = now
                            self.kept_seen |= kept is not None
                            if self.kept_seen and kept is None:
                                self.released = now
                        time.sleep(0.2)
            except psycopg.Error:
                time.sleep(0.2)

    def after(self, at: float | None) -> str:
        return "not seen" if at is None else f"{at - self.started:.1f} s"


def test_debezium_streams_again_on_the_new_leader_and_republishes_from_the_fence_only(
        stack, engine, redis_client, engines):
    assert sorted(stack.connect) == ["connect-1", "connect-2"], "no distributed Connect workers run"
    worker = stack.connect["connect-1"]
    assert debezium.applied_config(worker)["snapshot.mode"] == "when_needed"
    wait_until(lambda: debezium.connector_state(worker) == "RUNNING", "the connector does not run")
    slot, conninfo = engine_slot_name(engine, "debezium"), conninfo_of(engine)
    counted_before = republished_counted(stack)
    backlog = insert_events(engine, BACKLOG)
    wait_until(lambda: published_among(engine, backlog) == BACKLOG, "the backlog was not delivered")
    watch: list[SlotWatch] = []
    crashed = crash(engines)

    @contextmanager
    def crashed_and_watched(leader: str, standby: str):
        with crashed(leader, standby) as restoring:
            watch.append(SlotWatch(conninfo, slot, engines.postgres_port(standby)))
            yield restoring

    try:
        result = fail_over(stack, engine, redis_client, engines, crashed_and_watched, "leader crash")
        # The task reconnected through pg-lb and streams from a slot of the new leader's.
        wait_until(lambda: debezium.connector_state(worker) == "RUNNING",
                   "the connector's task does not run after the failover")
        with psycopg.connect(conninfo, autocommit=True) as conn:
            port, active, kept = conn.execute(_SLOT_ON_LEADER, {"slot": slot}).fetchone()
        assert port == engines.postgres_port(result.new)
        assert active, f"Debezium's slot {slot} is not in use on the new leader {result.new}"
        # Ended once the new slot passed a WAL head taken after it existed: the snapshot ran, streaming did.
        assert kept is None, "outbox_capture.republish_from is still kept"
        counted = wait_until(lambda: republished_counted(stack) - counted_before,
                             "relay_failover_republished_total counted nothing", timeout_s=WAIT_S)
        logged = [int(n) for name in ("relay-1", "relay-2")
                  for n in _LOGGED.findall(stack.log_of(name))]
        assert logged == [counted], f"the relay processes logged {logged}, their metric says {counted}"
        assert counted < result.retained, \
            f"{counted} events republished: not bounded by the fence ({result.retained} retained)"
        # What was delivered before the fence was not sent again: the snapshot started at the fence.
        found = by_event_id(read_topic(stack.config.kafka_bootstrap_servers, stack.config.kafka_topic))
        sent = Counter(len(found.get(event, ())) for event in backlog)
        assert sent == {1: BACKLOG}, f"the backlog's events by copies on Kafka: {dict(sent)}"
    finally:
        for w in watch:
            w.stop.set()
            w.thread.join(WAIT_S)
    seen = watch[0]
    REPORT.append(f"  Debezium: its slot in use on {result.new} {seen.after(seen.slot_active)} after the "
                  f"kill, the kept fence released {seen.after(seen.released)} after it; {counted} events "
                  f"counted republished (of {result.retained} retained at the kill), {result.copies} of "
                  "the games' events found twice on Kafka")
    print(REPORT[-1])
