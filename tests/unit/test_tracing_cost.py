"""What tracing costs while it is on: the sampler of OTEL_TRACES_SAMPLER (parent-based, so a sampled caller
keeps every hop sampled and an unsampled one records nothing yet passes a valid `traceparent` on), and the
bounded span queue (app/core/span_export.py) that drops and counts rather than waits or retries."""
from __future__ import annotations

import socket
import threading

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from app.core import span_export, tracing
from app.core.config import load_config
from app.core.setting_values import ConfigError
from app.core.span_export import SPANS_DROPPED, SPANS_EXPORTED, SpanQueue
from tests.helpers import wait_until

SAMPLED = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
UNSAMPLED = "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b8-00"


class Exporter(SpanExporter):
    """Records the batches it is given; answers `result`."""

    def __init__(self, result: SpanExportResult = SpanExportResult.SUCCESS) -> None:
        self.result, self.batches = result, []

    def export(self, spans):
        self.batches.append(list(spans))
        return self.result

    def shutdown(self) -> None:
        pass


def dropped(reason: str) -> float:
    return SPANS_DROPPED.labels(reason)._value.get()


@pytest.fixture
def traced(monkeypatch):
    """tracing's module tracer from a provider of the test's, with the default sampler and a queue."""
    def install(config=None, exporter=None, **queue):
        config = config or load_config()
        exporter = exporter or Exporter()
        spans = SpanQueue(exporter, config.otel_bsp_max_queue_size, **{"threaded": False, **queue})
        _, state = tracing.tracer_provider(config, spans)
        monkeypatch.setattr(tracing, "_tracing", state)
        return spans, exporter
    return install


def test_the_default_sampler_honors_the_caller_and_samples_a_ratio_of_new_traces(monkeypatch):
    for name in ("OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"):
        monkeypatch.delenv(name, raising=False)
    config = load_config()
    assert (config.otel_traces_sampler, config.otel_traces_sampler_arg) == ("parentbased_traceidratio", 0.01)
    assert "ParentBased{root:TraceIdRatioBased{0.01}" in tracing.sampler(config).get_description()
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "ALWAYS_ON")
    assert tracing.sampler(load_config()).get_description() == "AlwaysOnSampler"
    for name, bad in (("OTEL_TRACES_SAMPLER", "jaeger_remote"), ("OTEL_TRACES_SAMPLER_ARG", "1.5")):
        monkeypatch.setenv(name, bad)
        with pytest.raises(ConfigError):
            load_config()
        monkeypatch.delenv(name)


def test_an_unsampled_span_records_nothing_but_passes_a_valid_traceparent_on(traced):
    spans, exporter = traced()
    built = []

    def attributes():
        built.append(1)
        return {"event.id": "1"}

    child = tracing.start_span("apply", UNSAMPLED, attributes=attributes)
    child.end()
    sent = tracing.span_traceparent(child, None)
    assert not child.is_recording() and built == []  # no attribute built for a span nobody records
    assert sent.startswith("00-4bf92f3577b34da6a3ce929d0e0e4737-") and sent.endswith("-00")
    assert tracing.parent_of(sent) is not None and sent != UNSAMPLED  # a span of its own, in the same trace
    assert not spans.spans

    child = tracing.start_span("apply", SAMPLED, attributes=attributes)  # a sampled caller: every hop kept
    assert child.is_recording() and built == [1]
    child.end()
    assert tracing.span_traceparent(child, None).endswith("-01")
    assert [span.attributes["event.id"] for span in spans.spans] == ["1"]


def test_new_traces_are_sampled_at_the_ratio(traced, monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    spans, _ = traced(load_config())
    started = [tracing.start_span("GET /", None) for _ in range(2000)]
    for span in started:
        span.end()
    assert all(tracing.parent_of(tracing.span_traceparent(span, None)) is not None for span in started)
    assert 300 < len(spans.spans) < 700  # 500 expected; a binomial's 9 standard deviations either side


def test_the_queue_drops_past_its_bound_and_counts_each_span(traced, monkeypatch):
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "10")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    spans, exporter = traced(load_config())
    before = dropped("queue_full")
    for _ in range(25):
        tracing.start_span("GET /", None).end()
    assert len(spans.spans) == 10 and dropped("queue_full") - before == 15
    exported = SPANS_EXPORTED._value.get()
    assert spans.force_flush()
    assert [len(batch) for batch in exporter.batches] == [10] and SPANS_EXPORTED._value.get() - exported == 10


def test_after_a_failed_export_the_next_batches_are_dropped_unsent_until_the_pause_ends(traced, monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    now = [100.0]
    spans, exporter = traced(load_config(), exporter=Exporter(SpanExportResult.FAILURE), batch_size=4,
                             pause_s=1.0, pause_max_s=4.0, clock=lambda: now[0])
    failed, down = dropped("export_failed"), dropped("collector_down")

    def batch_of_four() -> None:
        for _ in range(4):
            tracing.start_span("GET /", None).end()
        spans.export_ready(everything=False)

    batch_of_four()  # sent, refused: a pause of 1 s
    batch_of_four()  # within the pause: dropped, never encoded nor sent
    assert len(exporter.batches) == 1
    assert (dropped("export_failed") - failed, dropped("collector_down") - down) == (4, 4)
    now[0] += 1.5
    batch_of_four()  # sent again, refused again: the pause doubles
    assert len(exporter.batches) == 2 and spans.paused_until == now[0] + 2.0
    exporter.result = SpanExportResult.SUCCESS
    now[0] += 2.5
    batch_of_four()
    assert len(exporter.batches) == 3 and spans.next_pause_s == 1.0 and not spans.spans


def test_an_unreachable_collector_never_blocks_the_spans_caller(traced, monkeypatch):
    """The real OTLP exporter against a port where nothing listens: ending spans only queues them while the
    export thread tries (and fails) once, then pauses."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces", timeout=0.5)
    attempts = threading.Event()
    export = exporter.export

    def export_and_mark(batch):
        try:
            return export(batch)
        finally:
            attempts.set()

    exporter.export = export_and_mark
    spans, _ = traced(load_config(), exporter=exporter, batch_size=8, every_s=3600, threaded=True)
    before = dropped("export_failed")
    for _ in range(8):  # a full batch wakes the export thread
        tracing.start_span("GET /", None).end()
    assert attempts.wait(30), "the export thread never tried the collector"
    caller = threading.current_thread()
    assert spans._thread is not caller and spans._thread.daemon
    for _ in range(100):  # while paused: appended, never exported by the caller
        tracing.start_span("GET /", None).end()
    wait_until(lambda: dropped("export_failed") - before == 8, "the failed batch was not counted")
    assert spans.clock() < spans.paused_until
    spans._stopping = True
    spans._wake.set()


def test_the_span_export_metrics_join_a_processs_own_registry():
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    span_export.register_metrics(registry)
    text = generate_latest(registry).decode()
    assert "tracing_spans_dropped_total" in text and "tracing_spans_exported_total" in text


@pytest.fixture
def configured(monkeypatch):
    """Installs this process's tracing as `configure_tracing` does (an endpoint where nothing listens, the
    sampler of the environment: the default unless the test sets one), put back off afterwards; answers
    the list of the spans the SDK's own `Tracer.start_span` started."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import Tracer

    for name in ("OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"):
        monkeypatch.delenv(name, raising=False)
    for name in ("_enabled", "_tracing", "_tracer"):
        monkeypatch.setattr(tracing, name, getattr(tracing, name, None), raising=False)
    monkeypatch.setattr(tracing, "_enabled", False)
    monkeypatch.setattr(trace, "set_tracer_provider", lambda provider: None)
    started = []
    sdk_start = Tracer.start_span

    def counted(self, *args, **kwargs):
        span = sdk_start(self, *args, **kwargs)
        started.append(span)
        return span

    monkeypatch.setattr(Tracer, "start_span", counted)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{unused.getsockname()[1]}"

    def configure() -> list:
        assert tracing.configure_tracing(load_config().replace(otel_exporter_otlp_endpoint=endpoint), "test")
        return started
    return configure


def test_only_the_spans_the_sampler_picks_are_the_sdks(configured):
    """The sampler's decision comes before the SDK: an unsampled span (99 % of new traces, and every child
    of an unsampled caller) is never an SDK span, yet passes a flag-00 `traceparent` of its own on."""
    started = configured()
    spans = [tracing.start_span("GET /", None) for _ in range(2000)]
    spans += [tracing.start_span("apply", UNSAMPLED) for _ in range(500)]
    spans += [tracing.start_span("apply", SAMPLED) for _ in range(5)]
    recorded = [span for span in spans if span.is_recording()]
    assert started == recorded  # the SDK started exactly the recorded spans
    assert 5 < len(recorded) < 5 + 60  # the 5 sampled callers' children, and about 1 % of 2,000 new traces
    for span in spans:
        sent = tracing.span_traceparent(span, None)
        assert tracing.parent_of(sent) is not None and sent.endswith("-01" if span.is_recording() else "-00")
        span.end()
    children = {tracing.span_traceparent(span, None) for span in spans[2000:2500]}
    assert len(children) == 500 and all(sent[:36] == UNSAMPLED[:36] for sent in children)


def test_a_new_trace_is_sampled_by_its_own_trace_id(configured, monkeypatch):
    """traceidratio decides on the trace id at every hop (not parent based): the trace id the SDK gives a
    sampled new trace is the one the decision was made on, so the next hops sample it too."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.1")
    configured()
    roots = [tracing.start_span("GET /", None) for _ in range(1000)]
    assert 40 < sum(root.is_recording() for root in roots) < 200
    for root in roots:
        child = tracing.start_span("publish", tracing.span_traceparent(root, None))
        assert child.is_recording() == root.is_recording()
        assert child.get_span_context().trace_id == root.get_span_context().trace_id


def test_unsampled_events_of_one_acknowledgement_share_the_relays_delivery_callback(configured):
    """With tracing on, an unsampled event has no span to end at its delivery report: the relay's
    callback stays one for the consecutive events of an ack (outbox_relay/relay.py `_produce`)."""
    from types import SimpleNamespace

    from outbox_relay.messages import Outgoing
    from outbox_relay.relay import Relay

    class Producer:
        def __init__(self):
            self.callbacks, self.headers = [], []

        def produce(self, topic, value, key, headers, on_delivery):
            self.callbacks.append(on_delivery)
            self.headers.append(dict(headers))

        def poll(self, _timeout):
            callbacks, self.callbacks = self.callbacks, []
            for callback in callbacks:
                callback(None, None)
            self.served = callbacks
            return len(callbacks)

    configured()
    producer = Producer()
    relay = SimpleNamespace(_producer_broken=None, topic="events", producer=producer, shutting_down=False,
                            stats=SimpleNamespace(observers=[]))
    relay._await_deliveries = Relay._await_deliveries.__get__(relay)
    messages = [Outgoing(b"k", b"{}", [], "tx1", n, "quiz", 0.0, UNSAMPLED) for n in range(20)]
    delivered, failed = Relay._produce(relay, messages)
    assert (delivered, failed) == (["tx1"] * 20, [])
    assert len({id(callback) for callback in producer.served}) == 1
    sent = [headers["traceparent"].decode() for headers in producer.headers]
    assert all(tracing.parent_of(value) is not None and value.endswith("-00") for value in sent)
    assert len(set(sent)) == 20 and all(value[:36] == UNSAMPLED[:36] for value in sent)
