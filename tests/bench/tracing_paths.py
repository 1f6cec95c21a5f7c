"""CPU per unsampled request and event, in-process: `.venv/bin/python -m tests.bench.tracing_paths [N]`.

Tracing's cost without the machine's load in it: each path of an answer's journey that tracing touches is
run N times (20,000) in this process with tracing on (the default sampler, OTEL_TRACES_SAMPLER_ARG's 1 %,
an OTLP endpoint where nothing listens) and off, over 3 rounds (off first, then on first, then off first:
whichever runs second in a round is slower by a few µs), and its CPU time (this process's,
the export thread's included) per call is printed, with the median of on − off:
- request: a request through the web's request log (app/web/api/request_log.py) to a route that reads the
  `traceparent` its events get (the outbox writers' `current_traceparent`), Flask's test client, no
  `traceparent` header (as bench 15's players send);
- relay: the relay's produce loop (`Relay._produce`) for a batch of 1,000 events against a producer stub
  that reports each delivery at once; with tracing on the rows carry the request's `traceparent` (flag 00),
  off they carry none;
- worker: the journey of one event the worker applies (`_journey` and the end of its span), the message's
  header as the relay sent it (on) or none (off);
- push: the journey recorded when a room note leaves (`record_push`), with the worker's `traceparent` (on)
  or none (off).
"""
from __future__ import annotations

import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

from flask import Flask

from app.core import tracing
from app.core.config import load_config
from app.core.events import Envelope
from app.web.api import request_log
from app.web.rooms.journey import record_push
from cache_worker.worker import _journey
from outbox_relay.messages import Outgoing
from outbox_relay.relay import Relay
from tests.helpers import free_port

UNSAMPLED = "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b8-00"


class _Producer:
    """confluent-kafka's Producer as `Relay._produce` uses it; each delivery reported at the next poll."""

    def __init__(self) -> None:
        self.reports: list = []

    def produce(self, topic, value, key, headers, on_delivery):
        self.reports.append(on_delivery)

    def poll(self, _timeout: float) -> int:
        reports, self.reports = self.reports, []
        for report in reports:
            report(None, None)
        return len(reports)


def _request_path():
    app = Flask(__name__)
    request_log.register(app)

    @app.get("/answer")
    def answer():
        return {"traceparent": tracing.current_traceparent()}

    client = app.test_client()
    return lambda: client.get("/answer")


def _relay_path(batch: int = 1000):
    producer = _Producer()
    relay = SimpleNamespace(_producer_broken=None, topic="events", producer=producer, shutting_down=False,
                            stats=SimpleNamespace(observers=[]), _errors=None)
    relay._await_deliveries = Relay._await_deliveries.__get__(relay)

    def messages():
        traceparent = UNSAMPLED if tracing.enabled() else None
        return [Outgoing(b"k", b"{}", [("event_id", b"1"), ("event_type", b"answer")], n, n, "quiz", 0.0,
                         traceparent) for n in range(batch)]
    return lambda: Relay._produce(relay, messages()), batch


def _worker_path():
    envelope = Envelope(uuid.uuid4(), "answer_submitted", 1, "quiz", "s1", datetime.now(UTC), {})
    on = SimpleNamespace(headers=lambda: [("event_id", b"1"), ("traceparent", UNSAMPLED.encode())])
    off = SimpleNamespace(headers=lambda: [("event_id", b"1")])

    def journey():
        traced = tracing.enabled()
        _, span = _journey(on if traced else off, envelope, traced)
        if traced:
            span.end()
    return journey


def _push_path():
    now_ms = str(int(time.time() * 1000))
    on = {"type": "answer", "clicked_ms": now_ms, "applied_ms": now_ms, "event_id": "1",
          "traceparent": UNSAMPLED}
    off = {key: value for key, value in on.items() if key != "traceparent"}
    return lambda: record_push(on if tracing.enabled() else off, "quiz")


def _cpu_us(call, times: int, per: int = 1) -> float:
    started = time.process_time()
    for _ in range(times):
        call()
    return (time.process_time() - started) * 1e6 / (times * per)


def main(times: int = 20_000) -> None:
    config = load_config().replace(otel_exporter_otlp_endpoint=f"http://127.0.0.1:{free_port()}")
    assert tracing.configure_tracing(config, "bench")
    relay, batch = _relay_path()
    paths = {"request": (_request_path(), times, 1), "relay": (relay, max(times // batch, 5), batch),
             "worker": (_worker_path(), times, 1), "push": (_push_path(), times, 1)}
    for name, (call, count, per) in paths.items():
        deltas = []
        for round_ in range(3):
            measured = {}
            for mode in ("off", "on")[::1 if round_ % 2 == 0 else -1]:
                tracing._enabled = mode == "on"
                call()  # warm
                measured[mode] = _cpu_us(call, count, per)
            deltas.append(measured["on"] - measured["off"])
            print(f"{name:8} round {round_ + 1}: off {measured['off']:7.2f} µs  on {measured['on']:7.2f} µs"
                  f"  on-off {deltas[-1]:6.2f} µs", flush=True)
        print(f"{name:8} median on-off: {statistics.median(deltas):.2f} µs per {name}", flush=True)
    tracing._enabled = True


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
