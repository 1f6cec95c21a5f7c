"""The end of an event's journey: its room note leaves for the sockets of a room or a live board.

The worker ends each note of an event it applies with the event's journey (`clicked_ms`: its row's
created_at; `event_id`; `traceparent` when traced: cache_worker/worker.py `_journey`), and the note's
stream entry id is the time Redis appended it (`applied_ms`, streams.py). When a web process pushes the
note to sockets, it observes the applied → pushed and click → socket hops (by aggregate) and, while
tracing is on, ends the trace with a push span. A board's note only marks it dirty: its top goes out at
the next tick (WS_LEADERBOARD_INTERVAL_MS later at most), which these hops leave out. Times come from
several clocks (the database's, Redis's, this host's): across hosts, their skew is in the figures.
"""
from __future__ import annotations

import time
from typing import Any

from opentelemetry.trace import SpanKind

from app.core import tracing
from app.core.metrics import APPLIED_TO_PUSHED, CLICK_TO_SOCKET


def record_push(note: dict[str, Any], aggregate_type: str) -> None:
    """`note` was pushed to sockets now; a note without a journey (or a garbled one) is left out."""
    try:
        clicked_ms, applied_ms = int(note["clicked_ms"]), int(note["applied_ms"])
    except (KeyError, TypeError, ValueError):
        return
    now_ms = time.time() * 1000
    APPLIED_TO_PUSHED.labels(aggregate_type).observe(max(now_ms - applied_ms, 0.0) / 1000)
    CLICK_TO_SOCKET.labels(aggregate_type).observe(max(now_ms - clicked_ms, 0.0) / 1000)
    if tracing.enabled():
        tracing.start_span(f"push {note.get('type')}", note.get(tracing.TRACEPARENT), kind=SpanKind.PRODUCER,
                           attributes=lambda: {"event.id": str(note.get("event_id")),
                                               "aggregate.type": aggregate_type}).end()
