"""4. Relay: the poll relay, the wal relay and Debezium drain the same backlog of outbox events, beside
a bare confluent-kafka producer in the same run; then commit → Kafka latency under a paced writer.

BENCH_RELAY_EVENTS events (default DEFAULT_EVENTS, the most the whole benchmark fits in ~12 minutes on a
quiet machine of two cores; the table says when a run used another size) are written with the session
they belong to (big_session: players x 100 questions, reused by the rebuild benchmark) while the stack's
relay is stopped. Then for each mode of BENCH_RELAY_MODES (default `wal,poll,debezium`; the configured
RELAY_MODE first) a fresh relay drains them:
- wal (`python -m outbox_relay`): from its start until the slot's confirmed position passes the WAL
  position taken after the events were written (polled every 0.5 s);
- poll: from its start until no unpublished row is left (the wal relay marks none, so the poll relay
  drains the same rows, plus the wal phase's paced events, all counted);
- debezium: Kafka Connect with the outbox connector (scripts/stack/connect.py, started and answering
  before the clock starts; Debezium's slot made before the events were written, no snapshot): from the
  connector's creation until its topic holds the backlog.
Per mode: events/s; the relay process's CPU per event (the Connect JVM's for debezium); PostgreSQL's CPU
per event for it: the backends serving the relay's connections (tests/bench/relay_latency.py
`BackendCpu`: the wal mode's peek, where pgoutput decodes; Debezium's walsender; the poll mode's claims
and marks). Then, with that relay still running, a paced writer offers BENCH_RELAY_RATES events/s
(default 500,2000) for BENCH_RELAY_LATENCY_S (20) each: commit → Kafka p50/p99, from the moment the
writer's COMMIT returned to the message's arrival at a consumer in this process (`commit_to_kafka`).
Each mode publishes to a topic of its own, `<topic>.<mode>`: nothing reaches the run's topic, so the
stack's worker (left running, idle) has no backlog to apply after this benchmark. Then the stack's relay
is passed over every row written here (its slot moved to the WAL's end in wal mode, the rows marked
published in poll mode) and started again: the next benchmark finds no backlog.
The bare producer sends the same number of messages (value = the relay's envelope JSON of real rows,
key = session id, the same headers) with the same settings (app.core.kafka.producer_settings) to a topic
of this run, produce + poll(0) per message and a final flush, from this process; each mode's rate is
reported against it (target: at least half of it).
"""
from __future__ import annotations

import os
import signal
import time

import psutil
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from sqlalchemy import text

from app.core.events import envelope_from_row
from app.core.kafka import ensure_topics, make_consumer, producer_settings
from app.core.outbox import capture_slot, drop_slots_of_database, engine_slot_name
from cache_worker.process import aggregate_types
from outbox_relay import debezium
from outbox_relay.pgoutput import lsn_to_int
from scripts.stack.connect import connect_program
from scripts.stack.supervisor import MANUAL
from tests.bench import big_session, report
from tests.bench.relay_latency import BackendCpu, commit_to_kafka
from tests.bench.stack import drop_capture_slot, wal_head
from tests.bench.support import CpuMeter, env_int, profiling, start_profile
from tests.helpers import free_port, wait_until

SESSION: dict = {}
DEFAULT_EVENTS = 1_000_000
RATES = [int(rate) for rate in os.environ.get("BENCH_RELAY_RATES", "500,2000").split(",") if rate.strip()]


def _unpublished(engine) -> int:
    with engine.connect() as db:
        return db.execute(text("SELECT count(*) FROM events WHERE published_at IS NULL")).scalar()


def _bare_producer(config, engine, count: int) -> dict:
    topic = config.kafka_topic.rsplit(".", 1)[0] + ".bare"
    admin = AdminClient({"bootstrap.servers": config.kafka_bootstrap_servers})
    for future in admin.create_topics([NewTopic(topic, num_partitions=config.kafka_partitions,
                                                replication_factor=1)]).values():
        future.result()
    with engine.connect() as db:
        rows = db.execute(text("SELECT id, aggregate_type, aggregate_id, event_type, version, payload, "
                               "created_at FROM events ORDER BY created_at, seq LIMIT 20000")).all()
    messages = []
    for row in rows:
        envelope = envelope_from_row(row)
        messages.append((envelope.to_json(), str(row.aggregate_id).encode(), envelope.headers()))
    producer = Producer(producer_settings(config, **{"client.id": "bench-bare"}))
    delivered = [0]

    def on_delivery(err, msg):
        if err is None:
            delivered[0] += 1

    with CpuMeter() as cpu:
        for i in range(count):
            value, key, headers = messages[i % len(messages)]
            while True:
                try:
                    producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
        producer.flush(120)
    return {"messages": count, "delivered": delivered[0], "seconds": round(cpu.wall, 2),
            "per_s": round(delivered[0] / cpu.wall, 1), "distinct_values": len(messages),
            "mean_value_bytes": round(sum(len(m[0]) for m in messages) / len(messages)),
            "cpu": cpu.report("self")}


def _modes(config) -> list[str]:
    modes = [m.strip() for m in os.environ.get("BENCH_RELAY_MODES", "wal,poll,debezium").split(",")
             if m.strip()]
    return sorted(modes, key=lambda m: m != config.relay_mode)


def _debezium_slot(engine, create: bool) -> None:
    """Debezium's slot of the bench database: made before the million are written (so the connector
    streams them), dropped after (an unread slot retains WAL)."""
    slot = engine_slot_name(engine, "debezium")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
        drop_slots_of_database(db, engine.url.database, only=slot)
        if create:
            db.execute(text("SELECT pg_create_logical_replication_slot(:s, 'pgoutput')"), {"s": slot})


def _cpu_of(pid: int) -> float:
    proc = psutil.Process(pid)
    return sum(t.user + t.system for t in (p.cpu_times() for p in [proc] + proc.children(recursive=True)))


def _on_topic(config, topic: str) -> int:
    consumer = make_consumer(config, **{"group.id": f"{topic}.count"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                   for p in partitions)
    finally:
        consumer.close()


class Running:
    """A relay of one mode started for the benchmark: its process (the Connect JVM for debezium), the
    topic it publishes to and how to stop it."""

    def __init__(self, mode: str, pid: int, config, stop):
        self.mode, self.pid, self.config, self.stop = mode, pid, config, stop


def _start_debezium(stack, config) -> Running:
    """Connect, answering, without the connector yet (its JVM start is not in any figure)."""
    own = config.replace(kafka_topic=f"{config.kafka_topic}.debezium", connect_port=free_port())
    ensure_topics(own)
    supervisor = stack.apps.supervisor
    supervisor.define(connect_program("connect", stack.logs, MANUAL, own))
    supervisor.start("connect")
    wait_until(lambda: debezium.connect_answers(own), "Kafka Connect did not answer", 180, every_s=0.5)
    return Running("debezium", supervisor.pid("connect"), own, lambda: supervisor.stop("connect"))


def _drain(stack, engine, config, mode: str, running: list[Running]) -> dict:
    """Start a relay of `mode` and time it until it has published the whole backlog (see the top); the
    relay is left running in `running`."""
    total = SESSION["answers"]
    if mode == "debezium":
        relay = _start_debezium(stack, config)
        running.append(relay)
        start_relay = lambda: debezium.apply_connector(  # noqa: E731
            relay.config, debezium.connector_config(relay.config, aggregate_types(), snapshot_mode="no_data",
                                                    topic_prefix=relay.config.kafka_topic))

        def left() -> int:
            return max(total - _on_topic(relay.config, relay.config.kafka_topic), 0)
    else:
        if mode == "wal":
            target = wal_head(engine)

            def left() -> int:
                status = capture_slot(engine)
                return 0 if status and lsn_to_int(status.confirmed_flush_lsn) >= target else total
        else:
            total = _unpublished(engine)

            def left() -> int:
                return _unpublished(engine)
        env = {"RELAY_MODE": mode, "KAFKA_TOPIC": f"{config.kafka_topic}.{mode}"}
        own = config.replace(kafka_topic=env["KAFKA_TOPIC"])
        ensure_topics(own)
        relay = None

        def start_relay() -> None:
            nonlocal relay
            process = stack.start("relay", **env)
            relay = Running(mode, process.pid, own, lambda: stack.stop("relay"))
            running.append(relay)
    started = time.monotonic()
    cpu0 = _cpu_of(relay.pid) if relay is not None else 0.0
    start_relay()
    # The whole drain (interrupted at its end), idle included: a peek's wait for PostgreSQL's decoding shows.
    profiler = start_profile(relay.pid, f"relay-{mode}", 900, idle=True) if profiling() else None
    deadline = started + env_int("BENCH_RELAY_MAX_S", 600)
    remaining, cpu = total, 0.0
    with BackendCpu(engine, relay.pid) as postgres:
        while time.monotonic() < deadline:
            try:
                cpu = _cpu_of(relay.pid) - cpu0
            except psutil.Error:
                pass
            remaining = left()
            if remaining == 0:
                break
            time.sleep(0.5)
        elapsed = time.monotonic() - started
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)  # py-spy writes what it has on Ctrl-C
        profiler.wait(60)
    drained = total - remaining
    pg_cpu = postgres.seconds
    return {"mode": mode, "events": total, "drained": drained, "seconds": round(elapsed, 1),
            "events_per_s": round(drained / elapsed, 1), "relay_cpu_cores": round(cpu / elapsed, 2),
            "cpu_us_per_event": round(cpu / max(drained, 1) * 1e6, 1),
            "postgres_cpu_us_per_event": None if pg_cpu is None else round(pg_cpu / max(drained, 1) * 1e6, 1)}


def _latencies(engine, relay: Running, paced_before: int) -> list[dict]:
    """Commit → Kafka at each offered rate, through the relay left running by its drain. Debezium's
    slot is older than the earlier modes' paced events: it publishes them first (waited for)."""
    if relay.mode == "debezium":
        expected = SESSION["answers"] + paced_before
        wait_until(lambda: _on_topic(relay.config, relay.config.kafka_topic) >= expected,
                   "Debezium did not publish the earlier paced events", env_int("BENCH_RELAY_MAX_S", 600),
                   every_s=0.5)
    seconds = env_int("BENCH_RELAY_LATENCY_S", 20)
    return [commit_to_kafka(engine, relay.config, relay.config.kafka_topic, rate, seconds)
            for rate in RATES]


def _pass_over(engine, config) -> None:
    """The backlog and the paced events are this benchmark's alone: whatever modes drained them, the
    stack's relay must not publish them again to the run's topic (its worker would spend minutes applying
    them). The stack's relay was stopped and caught up before: every row left unpublished is ours."""
    if config.relay_mode == "wal":
        with engine.connect() as db:
            db.execute(text("SELECT pg_replication_slot_advance(:slot, pg_current_wal_flush_lsn())"),
                       {"slot": engine_slot_name(engine)})
            db.commit()
    else:
        with engine.begin() as db:
            db.execute(text("UPDATE events SET published_at = now() WHERE published_at IS NULL"))
        # the wal mode's relay made it; nobody reads it, and it would retain the WAL
        drop_capture_slot(engine)


def relay_events() -> int:
    """BENCH_RELAY_EVENTS, rounded down to whole players of big_session's questions."""
    players = max(env_int("BENCH_RELAY_EVENTS", DEFAULT_EVENTS) // big_session.QUESTIONS, 1)
    return players * big_session.QUESTIONS


def bench_relay(stack, bench_engine, bench_config):
    # The stack's relay caught up before this (conftest's known_stack): in wal mode it has made the slot
    # and backfilled, so the events written below are the slot's, not the backfill's.
    modes = _modes(bench_config)
    runs, latencies = [], {}
    with stack.stopped("relay"):
        if "debezium" in modes:
            _debezium_slot(bench_engine, create=True)
        session_id, timings = big_session.create(bench_engine,
                                                 players=relay_events() // big_session.QUESTIONS)
        SESSION["id"], SESSION["answers"] = session_id, relay_events()
        paced = 0
        try:
            for mode in modes:
                running: list[Running] = []
                try:
                    runs.append(_drain(stack, bench_engine, bench_config, mode, running))
                    latencies[mode] = _latencies(bench_engine, running[0], paced)
                    paced += sum(phase["written"] for phase in latencies[mode])
                finally:
                    for relay in running:
                        relay.stop()
        finally:
            stack.stop("relay")
            if "debezium" in modes:
                _debezium_slot(bench_engine, create=False)
            _pass_over(bench_engine, bench_config)
        bare = _bare_producer(bench_config, bench_engine, SESSION["answers"])
    bare["cpu_us_per_event"] = round(bare["cpu"]["generator_cpu_s"] / max(bare["delivered"], 1) * 1e6, 1)
    report.record("relay", {"events": SESSION["answers"], "default_events": DEFAULT_EVENTS, "modes": runs,
                            "latency": latencies, "batch_size": bench_config.relay_batch_size,
                            "data_generation_s": timings, "bare_producer": bare,
                            "bare_producer_per_s": bare["per_s"],
                            "note": "seconds include the relay process start (~1 s); latency: commit "
                                    "returned in the writer -> arrival at a consumer of this process"})
    size = f"{SESSION['answers']:,} events" + ("" if SESSION["answers"] == DEFAULT_EVENTS else
                                              f" (default {DEFAULT_EVENTS:,})")
    for run in runs:
        report.row(f"relay ({run['mode']}): events/s draining {size}", run["events_per_s"], "/s",
                   baseline=bare["per_s"], baseline_name="bare producer", target=">= 0.5 x bare producer",
                   met=run["drained"] == run["events"] and run["events_per_s"] >= 0.5 * bare["per_s"])
        report.row(f"relay ({run['mode']}): relay process CPU per event", run["cpu_us_per_event"], "us",
                   baseline=bare["cpu_us_per_event"], baseline_name="bare producer")
        report.row(f"relay ({run['mode']}): PostgreSQL CPU per event (its backends)",
                   run["postgres_cpu_us_per_event"], "us")
        for phase in latencies.get(run["mode"], []):
            latency = phase["latency_ms"]
            report.row(f"relay ({run['mode']}): commit -> Kafka p50 / p99 @{phase['rate']}/s offered",
                       latency["p50"], f"ms (p99 {latency['p99']}, {phase['missing']:,} of "
                                       f"{phase['written']:,} not arrived)", target="(info)")
