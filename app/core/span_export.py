"""The export of recorded spans: a bounded queue, emptied in batches by one thread, that drops (and
counts) rather than waits or retries.

The SDK's BatchSpanProcessor does the same job, but it logs a warning for every span it drops (a log
record built per span while the queue is full), its drops are counted only through OpenTelemetry's own
metrics, and each batch is encoded and sent however the last one went. Against a collector that is down
that is the costly case: here a failed export pauses exporting (EXPORT_PAUSE_S, doubling up to
EXPORT_PAUSE_MAX_S while it keeps failing), and the batches of the pause are dropped without being
encoded. A request never waits for any of it: `on_end` appends to a deque or counts a drop.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)

BATCH_SIZE = 512  # spans per export (the SDK's default)
EXPORT_EVERY_S = 5.0  # a part batch waits this long at most (the SDK's default schedule delay)
EXPORT_PAUSE_S = 1.0
EXPORT_PAUSE_MAX_S = 30.0

# Not in a registry of their own: the web's workers write them to their multiprocess files; the relay and
# the workers add them to their registries (`register_metrics`).
SPANS_DROPPED = Counter("tracing_spans_dropped_total",
                        "Recorded spans never exported: queue_full (OTEL_BSP_MAX_QUEUE_SIZE), collector_down "
                        "(dropped during a pause after a failed export), export_failed",
                        ["reason"], registry=None)
SPANS_EXPORTED = Counter("tracing_spans_exported_total", "Recorded spans the collector accepted",
                         registry=None)
QUEUED = Gauge("tracing_spans_queued", "Recorded spans waiting for export", registry=None,
               multiprocess_mode="livesum")


def register_metrics(registry: Any) -> None:
    for metric in (SPANS_DROPPED, SPANS_EXPORTED, QUEUED):
        registry.register(metric)


class SpanQueue(SpanProcessor):
    """Exports sampled spans through `exporter` in batches, from a daemon thread that the first span starts
    (gevent's patched threading makes it a greenlet in a web worker; without `threaded`, the caller runs
    `export_ready`); holds `max_size` spans at most."""

    def __init__(self, exporter: SpanExporter, max_size: int, *, batch_size: int = BATCH_SIZE,
                 every_s: float = EXPORT_EVERY_S, pause_s: float = EXPORT_PAUSE_S,
                 pause_max_s: float = EXPORT_PAUSE_MAX_S, clock=time.monotonic,
                 threaded: bool = True) -> None:
        self.exporter = exporter
        self.max_size, self.batch_size, self.every_s = max_size, min(batch_size, max_size), every_s
        self.pause_s, self.pause_max_s, self.clock = pause_s, pause_max_s, clock
        self.spans: deque[ReadableSpan] = deque()
        self.paused_until = 0.0
        self.next_pause_s = pause_s
        self._lock = threading.Lock()  # one export at a time (the thread's and a flush)
        self._wake = threading.Event()
        self._stopping = False
        self.threaded = threaded
        self._thread: threading.Thread | None = None

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if not span.context.trace_flags.sampled or self._stopping:
            return
        if len(self.spans) >= self.max_size:
            SPANS_DROPPED.labels("queue_full").inc()
            return
        self.spans.append(span)
        if self._thread is None and self.threaded:
            self._start()
        if len(self.spans) >= self.batch_size:
            self._wake.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:  # started by the first span: after a fork, in the process that records
                self._thread = threading.Thread(target=self._run, name="span-export", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.every_s)
            self._wake.clear()
            self.export_ready(everything=False)

    def export_ready(self, everything: bool) -> None:
        """Export full batches (and one part batch), or `everything`; during a pause, drop them counted."""
        with self._lock:
            first = True
            while self.spans and (everything or first or len(self.spans) >= self.batch_size):
                first = False
                batch = [self.spans.popleft() for _ in range(min(self.batch_size, len(self.spans)))]
                QUEUED.set(len(self.spans))
                if self.clock() < self.paused_until:
                    SPANS_DROPPED.labels("collector_down").inc(len(batch))
                    continue
                self._export(batch)

    def _export(self, batch: list[ReadableSpan]) -> None:
        try:
            result = self.exporter.export(batch)
        except Exception:  # noqa: BLE001 - an exporter's failure is the collector's, never the caller's
            log.exception("tracing: export failed")
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            SPANS_EXPORTED.inc(len(batch))
            self.next_pause_s = self.pause_s
            return
        SPANS_DROPPED.labels("export_failed").inc(len(batch))
        self.paused_until = self.clock() + self.next_pause_s
        log.warning("tracing: the collector refused or missed %d spans; dropping spans for %.0f s",
                    len(batch), self.next_pause_s)
        self.next_pause_s = min(self.next_pause_s * 2, self.pause_max_s)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self.paused_until = 0.0  # a flush (at exit, in tests) tries once more whatever the last export did
        self.export_ready(everything=True)
        return not self.spans

    def shutdown(self) -> None:
        self.force_flush()
        self._stopping = True
        self._wake.set()
        self.exporter.shutdown()
