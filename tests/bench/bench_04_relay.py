"""4. Relay: drain 1,000,000 pre-written outbox events to Kafka in each relay mode, beside a bare
confluent-kafka producer measured in the same run.

The stack's relay (wal mode, the default: it created the database's slot at the suite's start) is
stopped, the events are written (with the session they belong to: 10,000 players x 100 questions,
reused by the rebuild benchmark), and a fresh relay process (`python -m outbox_relay`, default batch
size) is started for each mode of BENCH_RELAY_MODES (default `wal,poll,debezium`; the configured
RELAY_MODE first):
- wal: the clock runs from its start to the moment the slot's confirmed position passes the WAL
  position taken after the events were written (polled every 0.5 s);
- poll: from its start to the moment no unpublished row is left (the wal relay marks none, so the
  poll relay drains the same million, plus the earlier benchmarks' events, all counted);
- debezium: Kafka Connect with the outbox connector (scripts/stack/connect.py, started and answering
  before the clock starts; Debezium's slot made before the million were written, no snapshot): from the
  connector's creation to the moment its topic holds the million.
CPU per event is the relay process's (the Connect JVM's for debezium) CPU seconds over the events it
drained; PostgreSQL's decoding (walsender or peek) is not in it.
Each mode publishes to a topic of its own, `<topic>.<mode>`: the million never reaches the run's topic,
so the stack's worker (left running, idle) has no backlog of them to apply after this benchmark. Then
the stack's relay is passed over the million whatever modes ran (its slot moved to the WAL's end in wal
mode, the rows marked published in poll mode) and started again: the next benchmark finds no backlog.
The bare producer sends the same messages (value = the relay's envelope JSON of real rows,
key = session id, the same headers) with the same settings (app.core.kafka.producer_settings) to a topic
of this run, produce + poll(0) per message and a final flush, from this process; each mode's rate is
reported against it (target: at least half of it).
"""
from __future__ import annotations

import os
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
from tests.bench.stack import drop_capture_slot, wal_head
from tests.bench.support import CpuMeter, env_int, profiling, start_profile
from tests.helpers import free_port, wait_until

SESSION: dict = {}


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


def _drain_debezium(stack, engine, config) -> dict:
    """Connect with the outbox connector, timed from the connector's creation until its topic holds the
    million; the worker's JVM start is not in it."""
    own = config.replace(kafka_topic=f"{config.kafka_topic}.debezium", connect_port=free_port())
    ensure_topics(own)
    supervisor = stack.apps.supervisor
    supervisor.define(connect_program("connect", stack.logs, MANUAL, own))
    supervisor.start("connect")
    try:
        wait_until(lambda: debezium.connect_answers(own), "Kafka Connect did not answer", 180, every_s=0.5)
        pid = supervisor.pid("connect")
        total = SESSION["answers"]
        cpu0, started = _cpu_of(pid), time.monotonic()
        connector = debezium.connector_config(own, aggregate_types(), snapshot_mode="no_data",
                                              topic_prefix=own.kafka_topic)
        debezium.apply_connector(own, connector)
        deadline = started + env_int("BENCH_RELAY_MAX_S", 400)
        drained = 0
        while time.monotonic() < deadline and drained < total:
            time.sleep(0.5)
            drained = _on_topic(own, own.kafka_topic)
        elapsed, cpu = time.monotonic() - started, _cpu_of(pid) - cpu0
    finally:
        supervisor.stop("connect")
        _debezium_slot(engine, create=False)
    return {"mode": "debezium", "events": total, "drained": drained, "seconds": round(elapsed, 1),
            "events_per_s": round(drained / elapsed, 1), "relay_cpu_cores": round(cpu / elapsed, 2),
            "cpu_us_per_event": round(cpu / max(drained, 1) * 1e6, 1)}


def _drain(stack, engine, config, mode: str) -> dict:
    """Start a relay of `mode` and time it until it has published the whole outbox backlog."""
    if mode == "debezium":
        return _drain_debezium(stack, engine, config)
    if mode == "wal":
        target = wal_head(engine)
        total = SESSION["answers"]

        def left() -> int:
            status = capture_slot(engine)
            return 0 if status and lsn_to_int(status.confirmed_flush_lsn) >= target else total
    else:
        total = _unpublished(engine)

        def left() -> int:
            return _unpublished(engine)
    env = {"RELAY_MODE": mode, "KAFKA_TOPIC": f"{config.kafka_topic}.{mode}"}
    ensure_topics(config.replace(kafka_topic=env["KAFKA_TOPIC"]))
    started = time.monotonic()
    relay = stack.start("relay", **env)
    profiler = start_profile(relay.pid, f"relay-{mode}", 30, idle=True) if profiling() else None
    relay_cpu = 0.0
    deadline = started + env_int("BENCH_RELAY_MAX_S", 400)
    remaining = total
    while time.monotonic() < deadline:
        try:
            relay_cpu = stack.process_cpu("relay")
        except Exception:  # noqa: BLE001
            pass
        remaining = left()
        if remaining == 0:
            break
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    if profiler is not None:
        profiler.wait(60)
    stack.stop("relay")
    drained = total - remaining
    return {"mode": mode, "events": total, "drained": drained, "seconds": round(elapsed, 1),
            "events_per_s": round(drained / elapsed, 1), "relay_cpu_cores": round(relay_cpu / elapsed, 2),
            "cpu_us_per_event": round(relay_cpu / max(drained, 1) * 1e6, 1)}


def _pass_over(engine, config, session_id) -> None:
    """The million are this benchmark's alone: whatever modes drained them, the stack's relay must not
    publish them again to the run's topic (its worker would spend minutes applying them)."""
    if config.relay_mode == "wal":
        with engine.connect() as db:
            db.execute(text("SELECT pg_replication_slot_advance(:slot, pg_current_wal_flush_lsn())"),
                       {"slot": engine_slot_name(engine)})
            db.commit()
    else:
        with engine.begin() as db:
            db.execute(text("UPDATE events SET published_at = now() "
                            "WHERE aggregate_id = :s AND published_at IS NULL"), {"s": str(session_id)})
        # the wal mode's relay made it; nobody reads it, and it would retain the WAL
        drop_capture_slot(engine)


def bench_relay(stack, bench_engine, bench_config):
    # The stack's relay caught up before this (conftest's known_stack): in wal mode it has made the slot
    # and backfilled, so the million events written below are the slot's, not the backfill's.
    with stack.stopped("relay"):
        players = env_int("BENCH_BIG_PLAYERS", big_session.PLAYERS)
        if "debezium" in _modes(bench_config):
            _debezium_slot(bench_engine, create=True)
        session_id, timings = big_session.create(bench_engine, players=players)
        SESSION["id"], SESSION["answers"] = session_id, players * big_session.QUESTIONS
        try:
            runs = [_drain(stack, bench_engine, bench_config, mode) for mode in _modes(bench_config)]
        finally:
            stack.stop("relay")
            _pass_over(bench_engine, bench_config, session_id)
        bare = _bare_producer(bench_config, bench_engine, SESSION["answers"])
    bare["cpu_us_per_event"] = round(bare["cpu"]["generator_cpu_s"] / max(bare["delivered"], 1) * 1e6, 1)
    report.record("relay", {"modes": runs, "batch_size": bench_config.relay_batch_size,
                            "data_generation_s": timings, "bare_producer": bare,
                            "bare_producer_per_s": bare["per_s"],
                            "note": "seconds include the relay process start (~1 s)"})
    for run in runs:
        report.row(f"relay ({run['mode']}): events/s draining the outbox", run["events_per_s"], "/s",
                   baseline=bare["per_s"], baseline_name="bare producer", target=">= 0.5 x bare producer",
                   met=run["drained"] == run["events"] and run["events_per_s"] >= 0.5 * bare["per_s"])
        report.row(f"relay ({run['mode']}): CPU per event", run["cpu_us_per_event"], "us",
                   baseline=bare["cpu_us_per_event"], baseline_name="bare producer")
