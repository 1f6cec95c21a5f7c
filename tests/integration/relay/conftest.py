"""The outbox relay against the real PostgreSQL and Kafka: completeness, order, crashes, outages; a file per
concern (order, the wal mode's slot, the partitioned outbox's retention, the process, a broker outage).

The tests of what both relay modes promise run in both (`relay_mode`, parametrized indirectly: the
test's `relay_config` carries RELAY_MODE, so relays built here and relay processes get it). In poll mode
"published" means marked; in wal mode it means the slot's confirmed position passed the transaction,
which the relay only advances after Kafka acknowledged every event of it. Each test starts from a
clean state of its mode: wal mode skips the slot to the present (what earlier tests wrote is not
re-read), poll mode marks what earlier wal-mode tests left unmarked. Wal mode reads its slot as
RELAY_WAL_READ says (the test's configuration comes from the environment): `RELAY_WAL_READ=stream` runs
every wal-mode test over the replication protocol.
"""
from __future__ import annotations

import pytest
from sqlalchemy import text

from app.core.config import Config
from app.core.kafka import ensure_topics
from tests.integration.relay.support import skip_slot_to_now


@pytest.fixture()
def relay_mode(request, engine) -> str:
    """poll unless a test is parametrized with BOTH_MODES; the test starts from a clean outbox of its mode."""
    mode = getattr(request, "param", "poll").partition("+")[0]
    if mode == "wal":
        skip_slot_to_now(engine)
    else:
        with engine.begin() as conn:
            conn.execute(text("UPDATE events SET published_at = now() WHERE published_at IS NULL"))
    return mode


@pytest.fixture(scope="module")
def relay_topic(kafka_topics: Config) -> str:
    """The relay tests' own topic: their hundreds of thousands of events of made-up sessions stay out of
    the topic the end-to-end stack's worker consumes."""
    own = kafka_topics.replace(kafka_topic=kafka_topics.kafka_topic + ".relay")
    ensure_topics(own)
    return own.kafka_topic


@pytest.fixture()
def relay_config(request, config: Config, relay_mode: str, relay_topic: str) -> Config:
    """The test's configuration with RELAY_MODE set (tests of both modes bind it to `config`), and
    RELAY_WAL_READ when the test's mode names it ("wal+stream")."""
    callspec = getattr(request.node, "callspec", None)
    read = callspec.params.get("relay_mode", "").partition("+")[2] if callspec else ""
    return config.replace(relay_mode=relay_mode, kafka_topic=relay_topic,
                          relay_wal_read=read or config.relay_wal_read)


@pytest.fixture(autouse=True)
def _clean_outbox(relay_mode: str, kafka_topics: Config) -> None:
    """Every test of the module starts from its mode's clean state (see `relay_mode`)."""
