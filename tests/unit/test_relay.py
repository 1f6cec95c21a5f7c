"""The relay's pieces that need no services: throttled logging, URLs, the loop against a dead PostgreSQL."""
from __future__ import annotations

import logging
import threading

from confluent_kafka import KafkaError
from sqlalchemy import create_engine

from app.core.logs import RateLimitedLog
from outbox_relay.listener import OutboxListener, libpq_url
from outbox_relay.poll import PollRelay
from tests.helpers import wait_until


class RecordingProducer:
    def __init__(self):
        self.produced = []

    def produce(self, topic, value, key, headers, on_delivery):
        self.produced.append((topic, key, value, headers))
        on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT), None)

    def poll(self, timeout):
        return 0

    def flush(self, timeout):
        return 0


def test_a_recurring_failure_is_logged_once_per_interval_and_its_end_once(caplog):
    caplog.set_level(logging.INFO)
    throttled = RateLimitedLog(logging.getLogger("t"), interval_s=3600)
    for _ in range(50):
        throttled.warning("broker", "broker down")
    throttled.recovered("broker", "broker back")
    throttled.recovered("broker", "broker back")
    throttled.warning("broker", "broker down")
    assert [r.getMessage() for r in caplog.records] == ["broker down", "broker back", "broker down"]


def test_libpq_url_drops_the_driver_and_keeps_the_password():
    assert libpq_url("postgresql+psycopg://quiz:s%40cret@db:5433/quiz") == "postgresql://quiz:s%40cret@db:5433/quiz"


def test_the_loop_survives_a_dead_postgres_logging_once_and_stops_on_the_flag(caplog):
    caplog.set_level(logging.INFO, logger="outbox_relay")
    url = "postgresql+psycopg://quiz:quiz@127.0.0.1:1/quiz"  # nothing listens on port 1
    engine = create_engine(url, connect_args={"connect_timeout": 1})
    producer = RecordingProducer()
    relay = PollRelay(engine, producer, "t", listener=OutboxListener(url), poll_interval_s=0.05)
    rounds = []
    leads = relay.is_leader

    def counted_round() -> bool:
        rounds.append(1)
        return leads()

    relay.is_leader = counted_round
    thread = threading.Thread(target=relay.run)
    thread.start()
    # Three failed rounds of the loop at least (backoff 0.5, 1, 2 s).
    wait_until(lambda: len(rounds) > 3, "the relay did not retry a dead PostgreSQL three times")
    relay.signal_shutdown()
    thread.join(10)
    assert not thread.is_alive()
    assert sum("PostgreSQL unavailable" in r.getMessage() for r in caplog.records) == 1
    assert producer.produced == []
