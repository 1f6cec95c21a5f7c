"""Traces across the outbox, with OpenTelemetry and W3C trace context (`traceparent`).

A request's span context is written with its events (the `traceparent` column of `events`, by the
outbox writers, app/core/outbox.py), the relay sends it on as the Kafka header `traceparent`, the cache
worker continues the trace when it applies the event and hands it on in the event's room note
(`clicked_ms`, `event_id`, `traceparent`), and the web continues it when the room push leaves.

Spans are recorded and exported (OTLP over HTTP) only when OTEL_EXPORTER_OTLP_ENDPOINT is set
(`configure_tracing`, once per process), and then only for the traces the sampler picks
(OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG; by default 1 % of new traces, and every trace whose
caller's `traceparent` is sampled). An unsampled span records nothing (its attributes are not even
built: `start_span`'s `attributes` is a callable) but has a context of its own, flag 00, which passes on
like a sampled one; recorded spans leave through a bounded queue (app/core/span_export.py).
Without OTEL_EXPORTER_OTLP_ENDPOINT no SDK is imported or installed: the API is the
no-op one, `enabled()` is False and the callers skip their spans; a `traceparent` that came in (a request
header, a score message's header) still passes on to the events it caused. A missing or malformed
`traceparent` is no trace (`parent_of` answers None): it never fails a request or an event.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"  # the request header, the Kafka header and the events column
# version 00: 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>; an all-zero id is invalid (W3C).
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
TRACEPARENT_MAX = 55

_enabled = False
_tracer: trace.Tracer | None = None


def enabled() -> bool:
    """True once this process exports spans (`configure_tracing` with an endpoint)."""
    return _enabled


def configure_tracing(config: Any, service: str) -> bool:
    """Install the SDK's tracer provider exporting to OTEL_EXPORTER_OTLP_ENDPOINT, when it is set (in the
    process that serves: after gunicorn's fork, for the web). Returns whether tracing is on."""
    global _enabled, _tracer
    endpoint = config.otel_exporter_otlp_endpoint
    if not endpoint or _enabled:
        return _enabled
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    from app.core.span_export import SpanQueue

    provider = TracerProvider(resource=Resource.create({"service.name": f"livequiz-{service}"}),
                              sampler=sampler(config))
    # An unreachable collector costs the export thread one short timeout, then a pause; never the caller.
    provider.add_span_processor(SpanQueue(
        OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces",
                         timeout=config.otel_exporter_otlp_timeout_ms / 1000),
        config.otel_bsp_max_queue_size))
    trace.set_tracer_provider(provider)
    _tracer = provider.get_tracer("livequiz")  # once: the SDK's get_tracer is costly per call
    _enabled = True
    log.info("tracing: exporting spans to %s (%s, %s)", endpoint, config.otel_traces_sampler,
             config.otel_traces_sampler_arg)
    return True


def sampler(config: Any) -> Any:
    """The sampler OTEL_TRACES_SAMPLER names (OpenTelemetry's names and meanings), from the config."""
    from opentelemetry.sdk.trace import sampling

    ratio = config.otel_traces_sampler_arg
    return {"always_on": sampling.ALWAYS_ON, "always_off": sampling.ALWAYS_OFF,
            "parentbased_always_on": sampling.ParentBased(sampling.ALWAYS_ON),
            "parentbased_always_off": sampling.ParentBased(sampling.ALWAYS_OFF),
            "traceidratio": sampling.TraceIdRatioBased(ratio),
            "parentbased_traceidratio": sampling.ParentBasedTraceIdRatio(ratio)}[config.otel_traces_sampler]


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


def tracer() -> trace.Tracer:
    return _tracer if _tracer is not None else trace.get_tracer("livequiz")


def parent_of(traceparent: str | bytes | None) -> SpanContext | None:
    """The remote span context a `traceparent` names; None when it is missing or malformed (never raises)."""
    if traceparent is None:
        return None
    if isinstance(traceparent, bytes):
        try:
            traceparent = traceparent.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(traceparent, str) or len(traceparent) > TRACEPARENT_MAX:
        return None
    match = _TRACEPARENT.match(traceparent.strip().lower())
    if match is None:
        return None
    trace_id, span_id, flags = int(match[1], 16), int(match[2], 16), int(match[3], 16)
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags & 0x01))


def format_traceparent(span_context: SpanContext | None) -> str | None:
    if span_context is None or not span_context.is_valid:
        return None
    return f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{int(span_context.trace_flags):02x}"


def normal_traceparent(traceparent: str | bytes | None) -> str | None:
    """`traceparent` as it is stored and sent on: well formed, or None."""
    return format_traceparent(parent_of(traceparent))


def current_traceparent() -> str | None:
    """The `traceparent` of the span current in this context (a request's), None outside any."""
    return format_traceparent(trace.get_current_span().get_span_context())


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
    `attributes` are asked for only when the sampler records it. Only called while `enabled()`."""
    remote = parent_of(parent)
    context = trace.set_span_in_context(NonRecordingSpan(remote)) if remote is not None else None
    started = tracer().start_span(name, context=context, kind=kind, start_time=start_time_ns)
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
    return format_traceparent(started.get_span_context())
