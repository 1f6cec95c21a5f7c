"""The outbox connector of RELAY_MODE=debezium (outbox_relay/debezium_connector.json, filled by
outbox_relay/debezium.py) against what the cache worker expects: its topics, the key, the headers, and an
envelope it decodes into what our relays' envelope decodes into."""
from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

from app.core.config import Config
from app.core.dead_letters import REASON_HEADER
from app.core.events import Envelope, EventCatalog, envelope_from_row
from app.core.tracing import TRACEPARENT
from app.leaderboards.events import LEADERBOARD_EVENTS
from app.quiz.events import SESSION_EVENTS
from cache_worker.process import aggregate_types
from outbox_relay.debezium import UNROUTED_REASON, connector_config, connector_state, heartbeat_topic

CONFIG = Config().replace(database_url="postgresql+psycopg://quiz:secret@127.0.0.1:5433/quiz_x",
                          kafka_topic="test.ab.quiz.events", kafka_dlq_topic="test.ab.quiz.events.dlq")
CATALOG = EventCatalog(SESSION_EVENTS, LEADERBOARD_EVENTS)


def connector() -> dict[str, str]:
    return connector_config(CONFIG, aggregate_types())


def java_regex(pattern: str) -> re.Pattern:
    """A Java pattern of the kinds used here, as Python reads it (named groups are spelled differently)."""
    return re.compile(pattern.replace("(?<", "(?P<"))


def placements() -> list[tuple[str, str, str]]:
    placed = connector()["transforms.outbox.table.fields.additional.placement"]
    return [tuple(item.split(":")) for item in placed.split(",")]


def test_the_worker_knows_every_aggregate_type_the_router_routes_to_the_events_topic():
    config = connector()
    assert set(aggregate_types()) == set(CATALOG.types)
    routed = java_regex(config["transforms.outbox.route.topic.regex"])
    assert all(routed.fullmatch(kind) for kind in CATALOG.types)
    assert not any(routed.fullmatch(kind) for kind in ("bogus", "quiz_sessionx", "leaderboard.x", ""))
    assert config["transforms.outbox.route.topic.replacement"] == CONFIG.kafka_topic
    assert config["transforms.outbox.route.by.field"] == "aggregate_type"


def test_what_the_router_leaves_unrouted_goes_to_the_dead_letter_topic_with_a_reason():
    config = connector()
    unrouted = java_regex(config["predicates.unrouted.pattern"])
    assert not unrouted.fullmatch(CONFIG.kafka_topic)
    assert all(unrouted.fullmatch(topic)
               for topic in ("bogus", CONFIG.kafka_topic + "x", "test.abxquiz.events"))
    assert config["transforms"].split(",") == ["heartbeats", "outbox", "unroutedReason", "unrouted"]
    assert config["transforms.unroutedReason.predicate"] == "unrouted"
    assert config["transforms.unrouted.predicate"] == "unrouted"
    assert config["transforms.unroutedReason.header"] == REASON_HEADER
    assert config["transforms.unroutedReason.value.literal"] == UNROUTED_REASON
    assert config["transforms.unrouted.replacement"] == CONFIG.kafka_dlq_topic


def test_heartbeats_go_to_a_topic_of_their_own_so_connect_stores_their_offsets():
    """Connect stores the offset of a record Kafka acknowledged, never of one a transform dropped, and
    Debezium confirms to its slot only what Connect stored: a heartbeat must reach Kafka for the slot to
    pass the outbox's last transaction (outbox_relay/debezium.py)."""
    config = connector()
    topic = f"{config['topic.heartbeat.prefix']}.{config['topic.prefix']}"  # Debezium's heartbeat topic
    heartbeat = java_regex(config["predicates.heartbeat.pattern"])
    assert heartbeat.fullmatch(topic)
    assert not any(heartbeat.fullmatch(other) for other in (CONFIG.kafka_topic, CONFIG.kafka_dlq_topic, "x"))
    assert config["transforms"].split(",")[0] == "heartbeats"
    assert config["transforms.heartbeats.type"] == "org.apache.kafka.connect.transforms.RegexRouter"
    assert config["transforms.heartbeats.predicate"] == "heartbeat"
    own = heartbeat_topic(config["topic.prefix"])
    assert re.sub(config["transforms.heartbeats.regex"], config["transforms.heartbeats.replacement"], topic,
                  count=1) == own
    assert own.startswith(CONFIG.kafka_topic + ".")  # the run's topics, deleted with them in tests
    assert not java_regex(config["predicates.unrouted.pattern"]).fullmatch(own)  # not a dead letter
    # Connect makes that topic (one partition), and it is the only one of its group.
    assert config["topic.creation.groups"] == "heartbeats"
    assert java_regex(config["topic.creation.heartbeats.include"]).fullmatch(own)
    assert not any(java_regex(config["topic.creation.heartbeats.include"]).fullmatch(other)
                   for other in (CONFIG.kafka_topic, CONFIG.kafka_dlq_topic, own + "x"))
    assert config["topic.creation.heartbeats.partitions"] == "1"
    assert int(config["heartbeat.interval.ms"]) > 0 and config["lsn.flush.mode"] == "connector_and_driver"


def test_the_key_and_headers_are_the_ones_our_relays_write():
    config = connector()
    assert config["transforms.outbox.table.field.event.key"] == "aggregate_id"
    assert config["key.converter"].endswith("StringConverter")
    row = SimpleNamespace(id=uuid.uuid4(), aggregate_type="quiz_session", aggregate_id=str(uuid.uuid4()),
                          event_type="session_ended", version=1, payload={}, created_at=datetime.now(UTC),
                          traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    envelope = envelope_from_row(row)
    headers = {alias: getattr(row, column) for column, where, alias in placements() if where == "header"}
    # Our relays write the envelope's headers and, for a row that has one, the traceparent beside them.
    assert [(name, str(value).encode()) for name, value in headers.items()] == [
        *envelope.headers(), (TRACEPARENT, row.traceparent.encode())]
    assert envelope.key() == row.aggregate_id.encode()


def test_an_envelope_as_the_router_writes_it_decodes_as_our_relays_envelope_does():
    """The router's value (JsonConverter without schemas): the payload column's text as a string and the
    placed columns beside it, the uuid and timestamptz written as Debezium writes them."""
    config = connector()
    assert config["value.converter.schemas.enable"] == "false"
    assert config["transforms.outbox.table.expand.json.payload"] == "false"
    created = datetime(2026, 12, 6, 22, 17, 57, 408896, tzinfo=UTC)
    payload = {"ended_at": "2026-01-01T00:00:00+00:00", "note": None, "empty": []}
    row = SimpleNamespace(id=uuid.uuid4(), aggregate_type="quiz_session", aggregate_id=str(uuid.uuid4()),
                          event_type="session_ended", version=1, payload=payload, created_at=created)
    debezium_columns = {"id": str(row.id), "aggregate_type": row.aggregate_type,
                        "aggregate_id": row.aggregate_id, "event_type": row.event_type,
                        "version": row.version, "created_at": "2026-12-06T22:17:57.408896Z"}
    value = {"payload": json.dumps(payload)}
    value.update({alias: debezium_columns[column]
                  for column, where, alias in placements() if where == "envelope"})
    ours = envelope_from_row(row)
    assert set(value) == set(json.loads(ours.to_json()))
    theirs = CATALOG.decode(json.dumps(value).encode())
    assert theirs == CATALOG.decode(ours.to_json()) == ours
    assert isinstance(theirs, Envelope) and theirs.payload == payload


def test_the_connector_captures_every_partition_through_the_relay_publication():
    config = connector()
    assert config["publication.name"] == "outbox_relay"  # migration 0006: publish_via_partition_root
    assert config["publication.autocreate.mode"] == "disabled"
    assert config["table.include.list"] == "public.events"
    assert config["slot.name"] == "debezium_outbox_quiz_x"
    assert (config["database.dbname"], config["database.password"]) == ("quiz_x", "secret")


def test_make_ps_says_in_one_word_how_the_connector_is():
    """`connector_state` reads Connect's status (here a server answering as Connect does)."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    answers: dict[str, tuple[int, dict]] = {}

    class Connect(BaseHTTPRequestHandler):
        def do_GET(self):
            code, body = answers["status"]
            raw = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Connect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = CONFIG.replace(connect_port=server.server_address[1])
    running = {"state": "RUNNING"}
    try:
        answers["status"] = (200, {"connector": running, "tasks": [running]})
        assert connector_state(config) == "RUNNING"
        answers["status"] = (200, {"connector": running, "tasks": [{"state": "FAILED", "trace": "..."}]})
        assert connector_state(config) == "FAILED"
        answers["status"] = (200, {"connector": running, "tasks": []})
        assert connector_state(config) == "NO-TASK"
        answers["status"] = (404, {"error_code": 404})
        assert connector_state(config) == "MISSING"
    finally:
        server.shutdown()
        server.server_close()
    assert connector_state(config) == "DOWN"
