"""Traces across the outbox, with OpenTelemetry and W3C trace context (`traceparent`).

A request's span context is written with its events (the `traceparent` column of `events`, by the
outbox writers, app/core/outbox.py), the relay sends it on as the Kafka header `traceparent`, the cache
worker continues the trace when it applies the event and hands it on in the event's room note
(`clicked_ms`, `event_id`, `traceparent`), and the web continues it when the room push leaves.

Spans are recorded and exported (OTLP over HTTP) only when OTEL_EXPORTER_OTLP_ENDPOINT is set
(`configure_tracing`, once per process), and then only for the traces the sampler picks
(OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG; by default 1 % of new traces, and every trace whose
caller's `traceparent` is sampled). `start_span` makes the sampler's decision itself, from the trace id and
the parent's flag as OpenTelemetry's samplers do (`Sampling`), before the SDK is asked for anything: an
unsampled span (`Unsampled`) is no SDK span, records nothing (its attributes are not even built:
`start_span`'s `attributes` is a callable) and has only its `traceparent` (flag 00, a span id of its own),
which passes on like a sampled one's; the SDK starts the sampled spans (with the trace id decided on, for
a new trace) and they leave through a bounded queue (app/core/span_export.py).
Without OTEL_EXPORTER_OTLP_ENDPOINT no SDK is imported or installed: the API is the
no-op one, `enabled()` is False and the callers skip their spans; a `traceparent` that came in (a request
header, a score message's header) still passes on to the events it caused. A missing or malformed
`traceparent` is no trace (`normal_traceparent` answers None): it never fails a request or an event.
"""
from __future__ import annotations

import logging
import random
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"  # the request header, the Kafka header and the events column
# version 00: 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>; an all-zero id is invalid (W3C).
_TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
TRACEPARENT_MAX = 55
_NO_TRACE, _NO_SPAN = "0" * 32, "0" * 16
_LOW_64 = (1 << 64) - 1


class Sampling(NamedTuple):
    """OTEL_TRACES_SAMPLER's decision, as OpenTelemetry's samplers make it: a new trace is sampled when the
    low 64 bits of its id are below `bound` (TraceIdRatioBased's rule; 2**64 always, 0 never); a span with
    a parent follows the parent's sampled flag when `parent_based`, else the same rule on the trace id."""

    bound: int
    parent_based: bool

    def new_trace(self, trace_id: int) -> bool:
        return trace_id & _LOW_64 < self.bound

    def child(self, traceparent: str) -> bool:
        """`traceparent` is well formed (`normal_traceparent`)."""
        if self.parent_based:
            return traceparent[53:] == "01"
        return int(traceparent[19:35], 16) < self.bound


class _TraceIds:
    """The SDK's id generator: random ids, except that a new trace `start_span` sampled gets the trace id
    the decision was made on (`chosen`, per thread: it is set just before the SDK's call that takes it)."""

    def __init__(self) -> None:
        self._chosen = threading.local()

    def choose(self, trace_id: int) -> None:
        self._chosen.trace_id = trace_id

    def generate_trace_id(self) -> int:
        trace_id = getattr(self._chosen, "trace_id", 0)
        self._chosen.trace_id = 0
        return trace_id or _random_id(128)

    def generate_span_id(self) -> int:
        return _random_id(64)

    def is_trace_id_random(self) -> bool:
        return True


class Tracing(NamedTuple):
    """What `start_span` needs of a process's tracing: the SDK's tracer, the sampler's rule, the ids."""

    tracer: trace.Tracer
    sampling: Sampling
    ids: _TraceIds


_enabled = False
_tracing: Tracing | None = None


def enabled() -> bool:
    """True once this process exports spans (`configure_tracing` with an endpoint)."""
    return _enabled


def configure_tracing(config: Any, service: str) -> bool:
    """Install the SDK's tracer provider exporting to OTEL_EXPORTER_OTLP_ENDPOINT, when it is set (in the
    process that serves: after gunicorn's fork, for the web). Returns whether tracing is on."""
    global _enabled, _tracing
    endpoint = config.otel_exporter_otlp_endpoint
    if not endpoint or _enabled:
        return _enabled
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource

    from app.core.span_export import SpanQueue

    # An unreachable collector costs the export thread one short timeout, then a pause; never the caller.
    provider, _tracing = tracer_provider(config, SpanQueue(
        OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces",
                         timeout=config.otel_exporter_otlp_timeout_ms / 1000),
        config.otel_bsp_max_queue_size), Resource.create({"service.name": f"livequiz-{service}"}))
    trace.set_tracer_provider(provider)
    _enabled = True
    log.info("tracing: exporting spans to %s (%s, %s)", endpoint, config.otel_traces_sampler,
             config.otel_traces_sampler_arg)
    return True


def tracer_provider(config: Any, processor: Any, resource: Any = None) -> tuple[Any, Tracing]:
    """The SDK's provider sending spans to `processor`, sampling as the config says, and the `Tracing` of
    `start_span` that goes with it (its tracer fetched once: the SDK's get_tracer is costly per call)."""
    from opentelemetry.sdk.trace import TracerProvider

    ids = _TraceIds()
    provider = TracerProvider(sampler=sampler(config), id_generator=ids,
                              **({} if resource is None else {"resource": resource}))
    provider.add_span_processor(processor)
    return provider, Tracing(provider.get_tracer("livequiz"), sampling_of(config), ids)


def sampler(config: Any) -> Any:
    """The sampler OTEL_TRACES_SAMPLER names (OpenTelemetry's names and meanings), from the config."""
    from opentelemetry.sdk.trace import sampling

    ratio = config.otel_traces_sampler_arg
    return {"always_on": sampling.ALWAYS_ON, "always_off": sampling.ALWAYS_OFF,
            "parentbased_always_on": sampling.ParentBased(sampling.ALWAYS_ON),
            "parentbased_always_off": sampling.ParentBased(sampling.ALWAYS_OFF),
            "traceidratio": sampling.TraceIdRatioBased(ratio),
            "parentbased_traceidratio": sampling.ParentBasedTraceIdRatio(ratio)}[config.otel_traces_sampler]


def sampling_of(config: Any) -> Sampling:
    """`sampler(config)`'s decisions, as `start_span` makes them without the SDK."""
    from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

    name = config.otel_traces_sampler
    root = name.removeprefix("parentbased_")
    bound = {"always_on": _LOW_64 + 1, "always_off": 0}.get(root)
    if bound is None:
        bound = TraceIdRatioBased.get_bound_for_rate(config.otel_traces_sampler_arg)
    return Sampling(bound, name.startswith("parentbased_"))


def register_tracing_metrics(registry: Any) -> None:
    """Add the span export's counters to a process's own registry (the relay's, a consumer's)."""
    from app.core.span_export import register_metrics

    register_metrics(registry)


def flush_tracing(timeout_s: float = 5.0) -> None:
    """Export what is buffered (before a process exits)."""
    if _enabled:
        provider = trace.get_tracer_provider()
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            flush(int(timeout_s * 1000))


def _random_id(bits: int) -> int:
    return random.getrandbits(bits) or 1  # zero is no id (W3C)


def normal_traceparent(traceparent: str | bytes | None) -> str | None:
    """`traceparent` as it is stored and sent on: well formed (lowercase, flags 00 or 01), or None for a
    missing or malformed one (never raises)."""
    if traceparent is None:
        return None
    if isinstance(traceparent, bytes):
        try:
            traceparent = traceparent.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(traceparent, str) or len(traceparent) > TRACEPARENT_MAX:
        return None
    if _TRACEPARENT.fullmatch(traceparent) is None:  # as this system writes it, else as W3C allows
        traceparent = traceparent.strip().lower()
        if _TRACEPARENT.fullmatch(traceparent) is None:
            return None
    if traceparent[3:35] == _NO_TRACE or traceparent[36:52] == _NO_SPAN:
        return None
    flags = traceparent[53:]
    if flags != "00" and flags != "01":
        traceparent = traceparent[:53] + ("01" if int(flags, 16) & 0x01 else "00")
    return traceparent


def parent_of(traceparent: str | bytes | None) -> SpanContext | None:
    """The remote span context a `traceparent` names; None when it is missing or malformed (never raises)."""
    traceparent = normal_traceparent(traceparent)
    if traceparent is None:
        return None
    return SpanContext(int(traceparent[3:35], 16), int(traceparent[36:52], 16), is_remote=True,
                       trace_flags=TraceFlags(int(traceparent[53:], 16)))


def format_traceparent(span_context: SpanContext | None) -> str | None:
    """A span context's `traceparent`, with the sampled flag alone (as `normal_traceparent` keeps it)."""
    if span_context is None or not span_context.is_valid:
        return None
    sampled = "01" if span_context.trace_flags.sampled else "00"
    return f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{sampled}"


class Unsampled(NonRecordingSpan):
    """A span the sampler did not pick: no SDK span, nothing recorded; only its `traceparent` (flag 00), of
    which the span context is made when something asks for it."""

    def __init__(self, traceparent: str) -> None:
        super().__init__(None)  # the context, when asked for (`get_span_context`)
        self.traceparent = traceparent

    def get_span_context(self) -> SpanContext:
        if self._context is None:
            traceparent = self.traceparent
            self._context = SpanContext(int(traceparent[3:35], 16), int(traceparent[36:52], 16),
                                        is_remote=False, trace_flags=TraceFlags(TraceFlags.DEFAULT))
        return self._context


def _traceparent_of(span: trace.Span) -> str | None:
    if isinstance(span, Unsampled):
        return span.traceparent
    return format_traceparent(span.get_span_context())


def current_traceparent() -> str | None:
    """The `traceparent` of the span current in this context (a request's), None outside any."""
    return _traceparent_of(trace.get_current_span())


def attach_remote(traceparent: str | bytes | None) -> object | None:
    """Make the span `traceparent` names current (without recording one: tracing off); returns the token
    to `detach`, None when there was nothing to attach."""
    parent = parent_of(traceparent)
    if parent is None:
        return None
    return otel_context.attach(trace.set_span_in_context(NonRecordingSpan(parent)))


def detach(token: object | None) -> None:
    if token is not None:
        otel_context.detach(token)


def start_span(name: str, parent: str | bytes | None, *, kind: SpanKind = SpanKind.INTERNAL,
               attributes: Callable[[], dict[str, Any]] | None = None,
               start_time_ns: int | None = None) -> trace.Span:
    """A span (to `end()`) continuing the trace `parent` names, or a new trace when it names none; its
    `attributes` are asked for only when the sampler records it. Only called while `enabled()`.

    The sampler's decision comes first (`Sampling`): an unsampled span is an `Unsampled`, made of a
    string, and the SDK starts only the sampled ones."""
    state = _tracing
    traceparent = normal_traceparent(parent)
    if traceparent is None:
        trace_id = _random_id(128)
        if not state.sampling.new_trace(trace_id):
            return Unsampled(f"00-{trace_id:032x}-{_random_id(64):016x}-00")
        state.ids.choose(trace_id)  # the SDK's new trace gets the id it was sampled by
        context = None
    else:
        if not state.sampling.child(traceparent):
            return Unsampled(f"{traceparent[:36]}{_random_id(64):016x}-00")
        context = trace.set_span_in_context(NonRecordingSpan(parent_of(traceparent)))
    started = state.tracer.start_span(name, context=context, kind=kind, start_time=start_time_ns)
    if attributes is not None and started.is_recording():
        started.set_attributes(attributes())
    return started


@contextmanager
def span(name: str, parent: str | bytes | None, **options: Any) -> Iterator[trace.Span | None]:
    """`start_span` as a context manager that is made current; nothing at all while tracing is off."""
    if not _enabled:
        yield None
        return
    started = start_span(name, parent, **options)
    with trace.use_span(started, end_on_exit=True):
        yield started


def span_traceparent(started: trace.Span | None, fallback: str | None) -> str | None:
    """What to send on after `started`: its own context, or (tracing off) the `traceparent` it came with."""
    if started is None:
        return normal_traceparent(fallback)
    return _traceparent_of(started)
