"""4. Relay: drain 1,000,000 pre-written outbox events to Kafka, beside a bare confluent-kafka producer.

The worker is stopped for the rest of the suite (it would otherwise consume the million events while
the relay publishes them). The stack's relay is stopped, the events are written (with the session
they belong to: 10,000 players x 100 questions, reused by the rebuild benchmark), and a fresh relay
process (`python -m outbox_relay`, default batch size) is started; the clock runs from its start to
the moment no unpublished row is left (polled every 0.5 s).
The bare producer sends the same messages (value = the relay's envelope JSON of real rows, key =
session id, the same headers) with the same settings (app.kafka.producer_settings) to a topic of
this run, produce + poll(0) per message and a final flush, from this process.
"""
from __future__ import annotations

import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from sqlalchemy import text

from app.kafka import producer_settings
from app import events as app_events
from outbox_relay import relay as relay_module
from tests.bench import big_session, report
from tests.bench.support import CpuMeter, env_int, profiling, start_profile

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
        rows = db.execute(text("SELECT id, aggregate_type, aggregate_id, event_type, version, payload, created_at FROM events "
                               "ORDER BY created_at, seq LIMIT 20000")).all()
    envelope_of = getattr(app_events, "envelope_from_row", None) or getattr(relay_module, "envelope_of")
    messages = []
    for row in rows:
        envelope = envelope_of(row)
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
            "mean_value_bytes": round(sum(len(m[0]) for m in messages) / len(messages)), "cpu": cpu.report("self")}


def bench_relay(stack, bench_engine, bench_config):
    stack.stop("worker")
    stack.stop("relay")
    players = env_int("BENCH_BIG_PLAYERS", big_session.PLAYERS)
    session_id, timings = big_session.create(bench_engine, players=players)
    SESSION["id"], SESSION["answers"] = session_id, players * big_session.QUESTIONS
    total = _unpublished(bench_engine)
    started = time.monotonic()
    relay = stack.start("relay")
    profiler = start_profile(relay.pid, "relay", 30, idle=True) if profiling() else None
    relay_cpu = 0.0
    deadline = started + env_int("BENCH_RELAY_MAX_S", 400)
    left = total
    while time.monotonic() < deadline:
        try:
            relay_cpu = stack.process_cpu("relay")
        except Exception:  # noqa: BLE001
            pass
        left = _unpublished(bench_engine)
        if left == 0:
            break
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    drained = total - left
    if profiler is not None:
        profiler.wait(60)
    stack.stop("relay")
    bare = _bare_producer(bench_config, bench_engine, total)
    rate = drained / elapsed
    report.record("relay", {"events": total, "drained": drained, "seconds": round(elapsed, 1),
                            "events_per_s": round(rate, 1), "relay_cpu_cores": round(relay_cpu / elapsed, 2),
                            "batch_size": bench_config.relay_batch_size, "data_generation_s": timings,
                            "bare_producer": bare, "bare_producer_per_s": bare["per_s"],
                            "note": "seconds include the relay process start (~1 s)"})
    report.row("relay: events/s draining the outbox", round(rate, 1), "/s", baseline=bare["per_s"],
               baseline_name="bare producer", target=">= 0.5 x bare producer",
               met=drained == total and rate >= 0.5 * bare["per_s"])
