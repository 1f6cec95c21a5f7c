"""Debezium through a broker outage under load (the relay contract's outage test, tests/integration/relay/
test_relay_outage.py, with Kafka Connect as the relay): a Connect worker of this test's own against a
broker of its own, killed while events are written and started again. Nothing is lost. Debezium's
producer holds what it read while no broker answers (Connect's producer retries within its delivery
timeout) and its slot confirms nothing meanwhile; what it sends twice carries the same event ids."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import pytest

from app.core.kafka import ensure_topics
from tests.debezium.test_debezium_relay import on_topic
from tests.debezium_connect import DebeziumConnect
from tests.helpers import wait_until
from tests.integration.relay.support import SteadyWrites, read_topic
from tests.integration.worker_support import fresh_topics
from tests.kafka_broker import PrivateKafka


@pytest.mark.slow
def test_a_broker_outage_under_load_loses_nothing_under_debezium(engine, kafka_topics):
    with tempfile.TemporaryDirectory(prefix="debezium-kafka-") as workdir:
        kafka = PrivateKafka(Path(workdir))
        kafka.start()
        connect = None
        try:
            private = fresh_topics(kafka_topics).replace(kafka_bootstrap_servers=kafka.bootstrap)
            ensure_topics(private)
            connect = DebeziumConnect(private)
            config = connect.start(private, engine)
            writes = SteadyWrites(engine)
            ids = writes.ids
            try:
                wait_until(lambda: len(read_topic(kafka.bootstrap, config.kafka_topic)) > 500,
                           "events did not flow through Debezium")
                kafka.kill()
                written_when_killed = len(ids)
                wait_until(lambda: len(ids) > written_when_killed + 2000, "no writes during the outage")
                kafka.start()
            finally:
                writes.stop()
            found = on_topic(config, list(ids))
            connect.stop(config, engine)
        finally:
            if connect is not None:
                connect.close()
            kafka.kill()
    twice = sum(len(found[e]) - 1 for e in ids)
    logging.getLogger(__name__).warning("Debezium sent %d of %d events twice across the outage", twice,
                                        len(ids))
    assert all(found[e] for e in ids) and len(ids) > written_when_killed + 2000
    # What went out twice is the same message: same key (the session), same event id.
    assert all(len({m.key for m in found[e]}) == 1 for e in ids)
