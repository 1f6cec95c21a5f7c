"""The relay through a broker outage under load: nothing is lost."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import pytest

from app.core.kafka import ensure_topics
from tests.helpers import wait_until
from tests.integration.relay.support import (
    BOTH_MODES,
    RunningRelay,
    SteadyWrites,
    by_event_id,
    make_relay,
    read_topic,
    wait_published,
)
from tests.kafka_broker import PrivateKafka


@pytest.mark.slow
@BOTH_MODES
def test_a_broker_outage_under_load_loses_nothing(relay_config, engine, caplog):
    config = relay_config
    caplog.set_level(logging.INFO, logger="outbox_relay")
    with tempfile.TemporaryDirectory(prefix="relay-kafka-") as workdir:
        kafka = PrivateKafka(Path(workdir))
        try:
            kafka.start()
            private = config.replace(kafka_bootstrap_servers=kafka.bootstrap)
            ensure_topics(private)
            # The backlog of earlier tests goes to the private topic too: drain it first.
            relay = make_relay(config, engine, leader_lock=True, batch_size=200, bootstrap=kafka.bootstrap)
            running = RunningRelay(relay)
            writes = SteadyWrites(engine)
            ids = writes.ids
            try:
                wait_until(lambda: relay.stats.published_total > 500, "events did not flow")
                kafka.kill()
                published_when_killed = relay.stats.published_total
                written_when_killed = len(ids)
                wait_until(lambda: len(ids) > written_when_killed + 2000, "no writes during the outage")
                # Nothing can have been marked while no broker answered.
                assert relay.stats.published_total <= published_when_killed + relay.batch_size
                kafka.start()
                writes.stop()
                wait_published(engine, list(ids), config.relay_mode)
            finally:
                writes.stop()
                running.stop()
            found = by_event_id(read_topic(kafka.bootstrap, config.kafka_topic))
        finally:
            kafka.kill()
    missing = [e for e in ids if e not in found]
    assert not missing, f"{len(missing)} of {len(ids)} events lost"
    outage_warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(outage_warnings) < 10, [r.getMessage() for r in outage_warnings]
