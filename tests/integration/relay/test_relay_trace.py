"""The relay sends each event row's `traceparent` as the Kafka header of that name, in both modes; a row
without one, or with a malformed one, is published without it, never held back; and the commit → produced
histogram counts every delivered event, with tracing off."""
from __future__ import annotations

import uuid

from sqlalchemy import text

from outbox_relay.metrics import RelayMetrics
from tests.integration.relay.support import BOTH_MODES, by_event_id, drain, make_relay, read_topic

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@BOTH_MODES
def test_the_relay_sends_the_row_traceparent_as_a_header_and_times_the_hop(relay_config, engine):
    session = str(uuid.uuid4())
    rows = [("traced", TRACEPARENT), ("untraced", None), ("garbled", "not-a-traceparent")]
    ids = {}
    with engine.begin() as conn:
        for name, traceparent in rows:
            ids[name] = str(conn.execute(text("""
                INSERT INTO events (id, aggregate_type, aggregate_id, event_type, version, payload,
                                    traceparent)
                VALUES (gen_random_uuid(), 'quiz_session', :s, 'session_ended', 1,
                        jsonb_build_object('ended_at', clock_timestamp()), :t) RETURNING id"""),
                {"s": session, "t": traceparent}).scalar())
    relay = make_relay(relay_config, engine)
    metrics = RelayMetrics()
    relay.stats.observers.append(metrics)
    try:
        drain(relay)
    finally:
        relay.close()
    found = by_event_id(read_topic(relay_config.kafka_bootstrap_servers, relay_config.kafka_topic))
    assert [m.headers.get("traceparent") for m in found[ids["traced"]]] == [TRACEPARENT.encode()]
    assert [m.headers.get("traceparent") for m in found[ids["untraced"]]] == [None]
    assert [m.headers.get("traceparent") for m in found[ids["garbled"]]] == [None]  # published all the same
    assert metrics.registry.get_sample_value("relay_commit_to_produced_seconds_count",
                                             {"aggregate": "quiz_session"}) == 3
