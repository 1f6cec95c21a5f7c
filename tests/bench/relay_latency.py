"""The relay benchmark's instruments (bench 4): PostgreSQL's CPU on behalf of a relay, and commit → Kafka
latency under a paced writer.

- `BackendCpu`: the CPU seconds of the PostgreSQL backends serving a process's connections (a relay's
  claim/peek connection, where the wal mode's decoding runs; Debezium's walsender and JDBC connection),
  sampled from /proc every 0.5 s. A backend is found by the client port of one of the process's TCP
  connections to the server (pg_stat_activity.client_port). The process makes them after the window
  opens (a relay process is started in it; Connect connects when the connector is created in it), so a
  backend's CPU counts from its start.
- `commit_to_kafka`: a writer inserts outbox rows at a paced rate (one transaction per 10 ms tick carrying
  the events due), noting the time each transaction's COMMIT returned; a consumer of the relay's topic in
  this process notes when each message (by its `event_id` header) arrives. Latency = arrival − commit
  return, both on this process's clock.
"""
from __future__ import annotations

import threading
import time
import uuid

import psutil
from confluent_kafka import OFFSET_END, TopicPartition
from sqlalchemy import Engine, make_url, text

from app.core.config import Config
from app.core.kafka import make_consumer
from tests.bench.support import percentiles

TICK_S = 0.01
# The aggregates the paced events are spread over (sessions, so every partition of the topic is used).
PACED_SESSIONS = 64
_PACED_INSERT = text("""
    INSERT INTO events (id, aggregate_type, aggregate_id, event_type, version, payload)
    SELECT CAST(ids.id AS uuid), 'quiz_session', :prefix || (ids.n % :sessions), 'session_ended', 1,
           jsonb_build_object('ended_at', now())
    FROM unnest(CAST(:ids AS text[])) WITH ORDINALITY AS ids(id, n)""")


class BackendCpu:
    """CPU seconds of the PostgreSQL backends serving process `pid` (and its children) over a window."""

    def __init__(self, engine: Engine, pid: int):
        self.engine, self.pid = engine, pid
        self.port = make_url(str(engine.url)).port or 5432
        self._seen: dict[int, float] = {}  # backend pid -> its CPU seconds at the latest sample
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="backend-cpu", daemon=True)
        self.available = True

    def __enter__(self) -> BackendCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sample()

    @property
    def seconds(self) -> float | None:
        if not self.available:
            return None
        return sum(self._seen.values())

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self._sample()

    def _sample(self) -> None:
        try:
            root = psutil.Process(self.pid)
            ports = {c.laddr.port for p in [root] + root.children(recursive=True)
                     for c in p.net_connections(kind="tcp") if c.raddr and c.raddr.port == self.port}
        except psutil.Error:
            return
        if not ports:
            return
        with self.engine.connect() as db:
            backends = db.execute(text("SELECT pid FROM pg_stat_activity WHERE client_port = ANY(:ports)"),
                                  {"ports": list(ports)}).scalars().all()
        for backend in backends:
            try:
                times = psutil.Process(backend).cpu_times()
            except psutil.AccessDenied:
                self.available = False  # a server of another user or machine: not measurable from here
                continue
            except psutil.Error:
                continue
            self._seen[backend] = max(self._seen.get(backend, 0.0), times.user + times.system)


def _consume_arrivals(config: Config, topic: str, arrivals: dict[str, float], stop: threading.Event,
                      ready: threading.Event) -> None:
    consumer = make_consumer(config, group_id=f"{topic}.latency.{uuid.uuid4().hex[:6]}",
                             **{"enable.auto.commit": False, "fetch.wait.max.ms": 5})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in partitions])
        while not consumer.assignment():
            time.sleep(0.05)
        for tp in consumer.assignment():  # the end offsets resolved before the writer starts
            consumer.get_watermark_offsets(tp, timeout=10)
        ready.set()
        while not stop.is_set():
            for message in consumer.consume(500, 0.05):
                now = time.time()
                if message.error() is None:
                    event_id = dict(message.headers() or ()).get("event_id")
                    if event_id is not None:
                        arrivals.setdefault(event_id.decode(), now)
    finally:
        consumer.close()


def commit_to_kafka(engine: Engine, config: Config, topic: str, rate: int, seconds: float,
                    wait_s: float = 60.0) -> dict:
    """Write `rate` events/s for `seconds` and measure commit → arrival on `topic` (see the top); waits up
    to `wait_s` after the writer stopped for the last events. Returns the percentiles (ms) and counts."""
    committed: dict[str, float] = {}
    arrivals: dict[str, float] = {}
    stop, ready = threading.Event(), threading.Event()
    reader = threading.Thread(target=_consume_arrivals, args=(config, topic, arrivals, stop, ready),
                              name="latency-consumer", daemon=True)
    reader.start()
    if not ready.wait(30):
        raise RuntimeError(f"the latency consumer of {topic} did not start")
    time.sleep(1.0)  # its first fetch is issued before the first event commits
    prefix = f"paced-{uuid.uuid4().hex[:6]}-"
    started = time.monotonic()
    written = 0
    with engine.connect() as db:
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate) + 1 - written
            if due > 0:
                ids = [str(uuid.uuid4()) for _ in range(due)]
                db.execute(_PACED_INSERT, {"ids": ids, "prefix": prefix, "sessions": PACED_SESSIONS})
                db.commit()
                now = time.time()
                committed.update((event_id, now) for event_id in ids)
                written += due
            time.sleep(max(0.0, TICK_S - (time.monotonic() - started - elapsed)))
    offered_s = time.monotonic() - started
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and len(arrivals.keys() & committed.keys()) < len(committed):
        time.sleep(0.2)
    stop.set()
    reader.join(10)
    latencies = [(arrivals[e] - c) * 1000 for e, c in committed.items() if e in arrivals]
    return {"rate": rate, "seconds": round(offered_s, 1), "written": written,
            "written_per_s": round(written / offered_s, 1), "arrived": len(latencies),
            "missing": written - len(latencies), "latency_ms": percentiles(latencies)}
