"""RELAY_MODE=debezium: Kafka Connect with Debezium's PostgreSQL connector and its Outbox Event Router moves
the outbox to Kafka instead of our relay. This module owns the connector's configuration, its REST calls,
and what the relay process still does then (`DebeziumHousekeeper`).

The connector (outbox_relay/debezium_connector.json, its placeholders filled by `connector_config`) reads
its own slot (`app.core.outbox.capture_slot_name(db, "debezium")`) through the publication of migration
0006, which names the root table `events` whatever daily partition a row went to
(publish_via_partition_root), so every partition, today's and those made later, is captured. What it
produces on KAFKA_TOPIC is what our relays produce, as the worker decodes it:
- key: the aggregate id (the session's or the board's), as a string: same partition as ours (murmur2);
- headers `event_id` and `event_type` (the router's `table.fields.additional.placement`, from
  `app.core.events.HEADER_COLUMNS`), and Debezium's own `id` (the event id again);
- value: the envelope as JSON (JsonConverter without schemas), its fields placed by the router from the
  columns of `app.core.events.ENVELOPE_COLUMNS`. Two things differ from our relays' bytes, not from the
  decoded Envelope: `payload` is the jsonb column's text as a JSON string (the router's JSON expansion
  would drop nulls and empty arrays; `EventCatalog.decode` reads either), and `occurred_at` ends in `Z`.
Rows whose aggregate type the worker does not know (`route.topic.regex` names those it does) are left by
the router on a topic named after the type; the predicate `unrouted` (any topic but KAFKA_TOPIC and the
heartbeats') then
adds the dead-letter reason header and routes them to KAFKA_DLQ_TOPIC, and the connector goes on.

Guarantees, compared with ours: order per key holds (one task reads the slot in commit order, the
producer keeps a partition's order). Delivery is at least once: Debezium confirms a position to its slot
only after Connect committed the offsets of what Kafka acknowledged (every OFFSET_FLUSH_MS), so a Connect
worker killed in between republishes up to that window's events, with their event ids; the worker
dedupes. Our wal relay republishes at most one batch; Connect's window is time-based. A rolled-back
transaction is never decoded. An outbox gone idle still has its slot
advance, past its last transaction too. Debezium confirms to its slot only the position Connect stored as
its offsets (it reads them back at each commit), and Connect stores the offset of a record once Kafka
acknowledged it, never of one a transform dropped. An event's offset names the start of its own
transaction, so the end of the last one is confirmed by the next record Kafka acknowledges: Debezium's
heartbeat (every HEARTBEAT_MS), which the `heartbeats` transform routes to a topic of its own
(`heartbeat_topic`; Connect makes it, one partition kept HEARTBEAT_RETENTION_MS, the only topic it makes:
the others exist before the connector runs). From that end on, `lsn.flush.mode` `connector_and_driver`
lets the JDBC driver confirm the server's keepalive position, so WAL written by the server's other
databases (or by tables nobody publishes) is not retained by this slot either. Heartbeats dropped before
Kafka left the slot, and the backlog `ops outbox` reports, at the last event's start until the next
event came. `heartbeat.action.query` is not needed. The snapshot of a new slot (`snapshot.mode`
`when_needed`) publishes the rows never marked published (as our wal relay's backfill does), so a switch
from poll mode loses nothing; after a failover, only those from the replicated fence on.

The relay process under Debezium (`DebeziumHousekeeper`, leader-elected like the relays) publishes nothing.
It keeps the fence a new PostgreSQL leader's snapshot starts from
(`DebeziumHousekeeper.keep_fence_across_failover`), creates the daily partitions ahead and retires old ones
by Debezium's slot, exactly as wal mode retires by ours (outbox_relay/partitions.py, `retire_captured`): a
partition is detached with the WAL position of the moment as its fence, and dropped only once Debezium's
slot confirmed a position past it. It also records `outbox_capture.caught_up_at` for Debezium's slot (the
backlog `ops outbox` and the web report): each round takes the WAL head and its time, and once the slot has
passed that head, everything committed before that time was delivered.
"""
from __future__ import annotations

import json
import logging
import re
import string
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url

from app.core.config import Config
from app.core.db import PURGE_BATCH
from app.core.dead_letters import REASON_HEADER
from app.core.events import ENVELOPE_COLUMNS, HEADER_COLUMNS
from app.core.outbox import CAPTURE_PUBLICATION, capture_slot, capture_slot_name, engine_slot_name, outbox_lag
from outbox_relay import partitions
from outbox_relay.capture import (
    CAUGHT_UP,
    FENCE_TO_REPUBLISH,
    HEAD,
    RECORD_TIMELINE,
    REPUBLISH_WINDOW,
    REPUBLISHED,
    SLOT_TIMELINE,
)
from outbox_relay.relay import BatchResult, Relay

log = logging.getLogger("outbox_relay")

CONNECTOR_FILE = Path(__file__).with_name("debezium_connector.json")
# Connect commits source offsets (and Debezium then confirms its slot's position) this often: the window
# of events a killed Connect worker publishes again.
OFFSET_FLUSH_MS = 1000
# Debezium's heartbeat records, when it has nothing else to send: on a topic of their own (see the top),
# whose records nobody reads and which keeps them this long.
HEARTBEAT_MS = 5000
HEARTBEAT_PREFIX = "__debezium-heartbeat"
HEARTBEAT_RETENTION_MS = 3_600_000
# How long Debezium's task waits, after a retriable error (its replication connection lost, PostgreSQL
# not answering, a leader changing), before it starts again: `retriable.restart.connector.wait.ms`, a fixed
# wait between attempts with no limit on their number (errors.max.retries -1). Its default of 10 s added
# up to 10 s to a failover's time to streaming. At 2 s the task reaches a new leader within 2 s of its
# answering, and while none answers it costs PostgreSQL one connection attempt (and the worker's log one
# stack trace) every 2 s, as our relay's outage back-off does from its third try.
RESTART_WAIT_MS = 2000
UNROUTED_REASON = "unknown aggregate type: the outbox router has no topic for it"
REST_TIMEOUT_S = 10.0
# A new connector's configuration is validated (PostgreSQL connected to, the slot checked) before the PUT
# answers: on a busy machine that takes tens of seconds.
APPLY_TIMEOUT_S = 90.0


def connector_name(config: Config) -> str:
    """One connector per database, so the tests' private Connect and the stack's never share a name."""
    return "outbox-" + (make_url(config.database_url).database or "")


def heartbeat_topic(topic_prefix: str) -> str:
    """The topic of Debezium's heartbeats, beside the connector's own (its prefix: the run's, in tests)."""
    return f"{topic_prefix}.heartbeats"


def connect_url(config: Config) -> str:
    return f"http://127.0.0.1:{config.connect_port}"


def placement() -> str:
    """The router's `table.fields.additional.placement`: the headers, then the envelope's fields."""
    return ",".join([f"{column}:header:{name}" for name, column in HEADER_COLUMNS.items()]
                    + [f"{column}:envelope:{name}" for name, column in ENVELOPE_COLUMNS.items()])


def connector_config(config: Config, aggregate_types: list[str], *, snapshot_mode: str = "when_needed",
                     topic_prefix: str | None = None) -> dict[str, str]:
    """The connector of CONNECTOR_FILE for `config`'s database and topics; `aggregate_types` are those the
    worker applies (cache_worker.process.aggregate_types), any other is dead-lettered. `snapshot_mode`
    `when_needed` snapshots when the connector has no stored position (a new slot: the rows never marked
    published) and when its position is gone (a new PostgreSQL leader: those rows from the replicated
    fence on, DebeziumHousekeeper.keep_fence_across_failover); tests that start at the present pass
    `no_data`."""
    url = make_url(config.database_url)
    topic_prefix = topic_prefix or f"{config.kafka_topic}.debezium"
    heartbeat_pattern = re.escape(heartbeat_topic(topic_prefix))
    values = {
        "db_host": url.host or "127.0.0.1",
        "db_port": str(url.port or 5432),
        "db_user": url.username or "",
        "db_password": url.password or "",
        "db_name": url.database or "",
        "slot": capture_slot_name(url.database or "", "debezium"),
        "publication": CAPTURE_PUBLICATION,
        "topic_prefix": topic_prefix,
        "snapshot_mode": snapshot_mode,
        "heartbeat_ms": str(HEARTBEAT_MS),
        "restart_wait_ms": str(RESTART_WAIT_MS),
        "heartbeat_prefix": HEARTBEAT_PREFIX,
        "heartbeat_pattern": re.escape(f"{HEARTBEAT_PREFIX}.{topic_prefix}"),
        "heartbeat_topic": heartbeat_topic(topic_prefix),
        "heartbeat_topic_pattern": heartbeat_pattern,
        "heartbeat_retention_ms": str(HEARTBEAT_RETENTION_MS),
        "partitions": str(config.kafka_partitions),
        "placement": placement(),
        "routed": "(?<routedByValue>" + "|".join(re.escape(kind) for kind in aggregate_types) + ")",
        "topic": config.kafka_topic,
        "reason_header": REASON_HEADER,
        "unrouted_reason": UNROUTED_REASON,
        "dlq_topic": config.kafka_dlq_topic,
        "unrouted_pattern": f"(?!(?:{re.escape(config.kafka_topic)}|{heartbeat_pattern})$).*",
    }
    template = json.loads(CONNECTOR_FILE.read_text())
    return {key: string.Template(value).substitute(values) for key, value in template.items()}


# -- Connect's REST API ----------------------------------------------------------------------------

def _rest(config: Config, method: str, path: str, body: dict[str, Any] | None = None,
          timeout_s: float = REST_TIMEOUT_S) -> Any:
    request = urllib.request.Request(connect_url(config) + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json",
                                              "Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def connect_answers(config: Config) -> bool:
    try:
        _rest(config, "GET", "/")
        return True
    except (OSError, ValueError):
        return False


def apply_connector(config: Config, connector: dict[str, str]) -> None:
    """Create the connector, or change its configuration to `connector` (PUT is both). A distributed
    worker answers 409 while its group is forming or rebalancing: sent again until APPLY_TIMEOUT_S."""
    deadline = time.monotonic() + APPLY_TIMEOUT_S
    while True:
        try:
            _rest(config, "PUT", f"/connectors/{connector_name(config)}/config", connector,
                  timeout_s=APPLY_TIMEOUT_S)
            return
        except urllib.error.HTTPError as exc:
            if exc.code == 409 and time.monotonic() < deadline:
                time.sleep(0.5)
                continue
            raise RuntimeError(f"Kafka Connect refused the connector: {exc.code} "
                               f"{exc.read().decode(errors='replace')[:2000]}") from None


def applied_config(config: Config) -> dict[str, str] | None:
    """The configuration Connect runs the connector with, None when it has no such connector."""
    try:
        return _rest(config, "GET", f"/connectors/{connector_name(config)}/config")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def connector_status(config: Config) -> dict[str, Any] | None:
    """Connect's status of the connector (its state and its tasks'), None when Connect has no such one."""
    try:
        return _rest(config, "GET", f"/connectors/{connector_name(config)}/status")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def connector_state(config: Config) -> str:
    """One word for `make ps`: RUNNING when the connector and its task run, else what is not (or DOWN)."""
    try:
        status = connector_status(config)
    except (OSError, ValueError):
        return "DOWN"
    if status is None:
        return "MISSING"
    states = [status["connector"]["state"]] + [task["state"] for task in status.get("tasks", [])]
    if not status.get("tasks"):
        states.append("NO-TASK")
    bad = [state for state in states if state != "RUNNING"]
    return bad[0] if bad else "RUNNING"


def wait_running(config: Config, timeout_s: float = 90.0) -> None:
    """Until the connector and its task run; RuntimeError with the task's trace when one failed."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            status = connector_status(config)
        except (OSError, ValueError):
            status = None
        if status is not None:
            for task in status.get("tasks", []):
                if task["state"] == "FAILED":
                    raise RuntimeError(f"the connector's task failed: {task.get('trace', '')[:3000]}")
            if connector_state(config) == "RUNNING":
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"connector {connector_name(config)} not running within {timeout_s:.0f} s: "
                               f"{status}")
        time.sleep(0.2)


# -- the relay process under Debezium --------------------------------------------------------------

_SLOT_EXISTS = text("SELECT count(*) > 0 FROM pg_replication_slots WHERE slot_name = :slot")
# The rows a new slot's snapshot selects after a failover (the connector's snapshot select, from the fence
# on; `until` is the first transaction id not given out once the slot existed): counted, an upper bound.
_KEPT_FENCE = text("SELECT republish_from FROM outbox_capture WHERE slot_name = :slot")
MISSING, KEPT = "missing", "kept"  # DebeziumHousekeeper.keep_fence_across_failover
_REPUBLISH_COUNT = text("""
    SELECT count(*) FROM events
    WHERE published_at IS NULL
      AND age(xmin) <= age(CAST(CAST(CAST(:fence AS bigint) % 4294967296 AS text) AS xid))
      AND age(xmin) > age(CAST(CAST(CAST(:until AS bigint) % 4294967296 AS text) AS xid))""")


class DebeziumHousekeeper(Relay):
    """The relay process when Kafka Connect relays (see the top): no producer, no batches; the outbox's
    partitions ahead, their retirement by Debezium's slot, the backlog measured by it, and the fence a new
    leader's snapshot starts from."""

    mode = "debezium"

    def __init__(self, engine: Engine, **kwargs: Any):
        super().__init__(engine, None, "", **kwargs)
        self.slot = engine_slot_name(engine, "debezium")
        self._pending: Any = None  # the WAL head (lsn, at, xmin) the slot is to pass next
        self._passed: partitions.RetireFence | None = None

    def relay_batch(self) -> BatchResult:
        return BatchResult(0, 0, 0)

    def keep_fence_across_failover(self, conn: Connection) -> str | None:
        """PostgreSQL 15 does not carry a logical slot to a promoted standby. On the new leader Debezium's
        stored position is gone, and the connector (`snapshot.mode` when_needed) makes its slot again and
        snapshots the outbox with the select of CONNECTOR_FILE: the rows never marked published from the
        fence of the last caught-up record on (`outbox_capture`, replicated; the wal relay's bound), not
        every retained row. That fence must not move before the snapshot ran: once the slot is seen
        missing, or made on another timeline than the one recorded (Debezium made it again before this
        process looked), it is kept as `republish_from` and the head taken on the former leader is void;
        the caught-up record then waits for the new slot to pass a head taken after the slot existed
        (`advance_fence`), which it does only once its snapshot is done and streaming is under way.
        Returns MISSING (no slot yet), KEPT (the slot exists, the fence is kept) or None."""
        slot_exists = bool(conn.execute(_SLOT_EXISTS, {"slot": self.slot}).scalar())
        recorded = conn.execute(SLOT_TIMELINE, {"slot": self.slot}).one_or_none()
        conn.commit()
        moved = recorded is not None and recorded.slot_timeline not in (None, recorded.now)
        if not slot_exists or moved:
            kept_before = conn.execute(_KEPT_FENCE, {"slot": self.slot}).scalar_one_or_none()
            fence = conn.execute(FENCE_TO_REPUBLISH, {"slot": self.slot}).scalar_one_or_none()
            conn.commit()
            if fence is not None and kept_before is None:
                self._pending = None  # taken on the former leader: void on the new one
                log.warning("Debezium's slot %s is %s (a new PostgreSQL leader): its snapshot republishes "
                            "the events from transaction %s on", self.slot,
                            "made on another timeline" if slot_exists else "missing", fence)
        if not slot_exists:
            return MISSING
        conn.execute(RECORD_TIMELINE, {"slot": self.slot, "force": moved})
        window = conn.execute(REPUBLISH_WINDOW, {"slot": self.slot}).one_or_none()
        conn.commit()
        return KEPT if window is not None else None

    def advance_fence(self) -> bool:
        """When Debezium's slot has passed the head taken earlier, record that everything committed before
        it was delivered (and use it as the default partition's fence); then take a new head. True when
        the slot passed one. After a failover, no head is taken before the new slot exists, and the first
        one passed also ends the fence kept for the snapshot and counts the rows the snapshot selected (an
        upper bound: `relay_failover_republished_total`)."""
        with self.engine.connect() as conn:
            failover = self.keep_fence_across_failover(conn)
        if failover == MISSING:
            self._pending = None
            return False
        passed = False
        if self._pending is not None and partitions.captured_past(self.engine, self.slot, self._pending.lsn):
            self._passed = partitions.RetireFence(self._pending.lsn, int(self._pending.xmin))
            with self.engine.begin() as conn:
                if failover == KEPT:
                    window = conn.execute(REPUBLISH_WINDOW, {"slot": self.slot}).one()
                    count = int(conn.execute(_REPUBLISH_COUNT, {
                        "fence": window.republish_from, "until": window.republish_until}).scalar_one())
                    self.stats.record_failover_republished(count)
                    conn.execute(REPUBLISHED, {"slot": self.slot})
                    log.warning("Debezium's slot %s streams on the new PostgreSQL leader: its snapshot "
                                "republished at most %d events; the fence is released", self.slot, count)
                conn.execute(CAUGHT_UP, {"slot": self.slot, "at": self._pending.at,
                                         "xmin": int(self._pending.xmin)})
            self._pending, passed = None, True
        if self._pending is None:
            with self.engine.connect() as conn:
                self._pending = conn.execute(HEAD).one()
        return passed

    def _record_lag(self) -> None:
        self.advance_fence()
        lag_s, pending = outbox_lag(self.engine, self.mode)
        status = capture_slot(self.engine, self.slot)
        self.stats.record_lag(lag_s, pending, status.behind_bytes if status is not None else 0)

    def _retire(self) -> None:
        result = partitions.retire_captured(self.engine, self.retention_hours, self.slot, self._passed,
                                            batch=PURGE_BATCH, max_batches=20,
                                            stopping=lambda: self.shutting_down)
        if result.default_deleted:
            log.info("deleted %d captured events of the default partition older than %g h",
                     result.default_deleted, self.retention_hours)
