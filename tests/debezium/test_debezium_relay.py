"""The relay's contract against Debezium (RELAY_MODE=debezium): the scenarios the poll and wal relays are
tested on (tests/integration/relay), with Kafka Connect and the outbox connector as the relay, on the real
PostgreSQL and Kafka. `make test-debezium` runs this directory; `make test` runs only the smoke test of
tests/integration/relay/test_relay_debezium.py.

Where Debezium's guarantee differs from ours the test says so: a Connect worker killed between producing
and committing its offsets publishes again what it had produced since its last offset commit (ours: at
most the batch in hand), with the same event ids, and the worker's dedupe absorbs it.
"""
from __future__ import annotations

import logging
import uuid

from sqlalchemy import text

from app.core.config import Config
from app.core.dead_letters import REASON_HEADER
from app.core.kafka import make_producer
from app.core.outbox import engine_slot_name, published_condition
from outbox_relay import debezium, partitions
from outbox_relay.capture import WalRelay
from outbox_relay.debezium import DebeziumHousekeeper
from outbox_relay.process import build_relay
from tests.events import EVENTS
from tests.helpers import Api, sample_questions, wait_until
from tests.integration.relay.burst import Burst
from tests.integration.relay.support import by_event_id, insert_events, read_topic, skip_slot_to_now
from tests.integration.relay.test_relay_retention import (
    events_partition_of,
    insert_dated,
    make_old_partition,
    partition_exists,
)
from tests.integration.worker_support import fresh_topics, new_worker, pg_scores, redis_scores

INSERT = text("INSERT INTO events (id, aggregate_type, aggregate_id, event_type, version, payload) "
              "VALUES (:id, :kind, :s, 'session_ended', 1, jsonb_build_object('ended_at', now())) "
              "RETURNING seq")


def on_topic(config: Config, ids: list[str], topic: str | None = None) -> dict:
    """The messages of `topic` (the events topic) by event id, once every one of `ids` is there."""
    found: dict = {}

    def arrived() -> bool:
        found.clear()
        found.update(by_event_id(read_topic(config.kafka_bootstrap_servers, topic or config.kafka_topic)))
        return all(event_id in found for event_id in ids)

    wait_until(arrived, f"{len(ids)} events did not all reach {topic or config.kafka_topic}")
    return found


def insert_one(engine, kind: str = "quiz_session", session: str | None = None) -> str:
    event_id = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(INSERT, {"id": event_id, "kind": kind, "s": session or str(uuid.uuid4())})
    return event_id


def test_a_backlog_is_published_once_each_in_creation_order_within_each_session(debezium_connect, engine,
                                                                                 kafka_topics):
    config = debezium_connect.start(fresh_topics(kafka_topics), engine)
    debezium_connect.stop(config, engine)  # the slot exists and is not read: what follows is a backlog
    sessions = [uuid.uuid4() for _ in range(5)]
    ids = []
    for _ in range(4):
        ids += insert_events(engine, 250, sessions)
    debezium_connect.start(config, engine, from_now=False)
    try:
        found = on_topic(config, ids)
    finally:
        debezium_connect.stop(config, engine)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, aggregate_id FROM events WHERE id = ANY(CAST(:ids AS uuid[])) "
                                 "ORDER BY created_at, seq"), {"ids": ids}).all()
    assert all(len(found[e]) == 1 for e in ids)
    for session in sessions:
        expected = [str(r.id) for r in rows if r.aggregate_id == str(session)]
        messages = sorted((found[e][0] for e in expected), key=lambda m: m.offset)
        assert [m.event_id for m in messages] == expected
        assert all(m.key == str(session).encode() for m in messages)


def test_a_burst_of_answers_reaches_kafka_once_each_keyed_and_in_session_order(app, api: Api, relayed,
                                                                               engine):
    burst = Burst.joined(api, players_each=20)
    burst.play(app, api, workers=16)
    rows = burst.events(engine)
    burst.check_published(rows, on_topic(relayed, [str(r.id) for r in rows]))


def test_a_transaction_committing_after_a_later_one_is_still_published(relayed, engine):
    """The sequence gap: A takes the earlier seq, B a later one and commits first; A commits later.
    Debezium publishes in commit order: B, then A."""
    config = relayed
    session = str(uuid.uuid4())
    a_id, b_id = str(uuid.uuid4()), str(uuid.uuid4())
    with engine.connect() as tx_a:
        a_seq = tx_a.execute(INSERT, {"id": a_id, "kind": "quiz_session", "s": session}).scalar()
        with engine.begin() as tx_b:
            b_seq = tx_b.execute(INSERT, {"id": b_id, "kind": "quiz_session", "s": session}).scalar()
        assert a_seq < b_seq
        on_topic(config, [b_id])
        tx_a.commit()
    found = on_topic(config, [a_id, b_id])
    assert len(found[a_id]) == 1 and len(found[b_id]) == 1
    assert found[b_id][0].offset < found[a_id][0].offset


def test_a_rolled_back_transaction_or_savepoint_is_never_published(relayed, engine):
    config = relayed
    session = str(uuid.uuid4())
    kept, rolled_back, in_savepoint = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    with engine.connect() as conn:
        conn.execute(INSERT, {"id": rolled_back, "kind": "quiz_session", "s": session})
        conn.rollback()
        with conn.begin():
            conn.execute(INSERT, {"id": kept, "kind": "quiz_session", "s": session})
            savepoint = conn.begin_nested()
            conn.execute(INSERT, {"id": in_savepoint, "kind": "quiz_session", "s": session})
            savepoint.rollback()
    later = insert_one(engine, session=session)  # committed after all of them: its arrival bounds the wait
    found = on_topic(config, [kept, later])
    assert len(found[kept]) == 1
    assert rolled_back not in found and in_savepoint not in found


def test_an_unknown_aggregate_type_is_dead_lettered_with_its_reason_and_the_connector_goes_on(relayed,
                                                                                               engine):
    config = relayed
    before = insert_one(engine)
    unknown = insert_one(engine, kind="not_an_aggregate")
    after = insert_one(engine)
    found = on_topic(config, [before, after])
    assert unknown not in found
    letters = on_topic(config, [unknown], config.kafka_dlq_topic)[unknown]
    assert len(letters) == 1
    assert letters[0].headers[REASON_HEADER].decode() == debezium.UNROUTED_REASON
    assert letters[0].headers["event_type"] == b"session_ended"
    assert debezium.connector_state(config) == "RUNNING"


def test_both_relays_produce_the_same_decoded_envelope_key_and_headers(relayed, engine):
    """One event, relayed by our wal relay to one topic and by Debezium to another."""
    config = relayed
    ours = fresh_topics(config)
    skip_slot_to_now(engine)
    event_id = insert_one(engine)
    theirs = on_topic(config, [event_id])[event_id][0]
    relay = WalRelay(engine, make_producer(ours), ours.kafka_topic, leader_lock=False)
    try:
        while relay.relay_batch().claimed:
            pass
    finally:
        relay.close()
    mine = on_topic(ours, [event_id])[event_id][0]
    assert EVENTS.decode(theirs.value) == EVENTS.decode(mine.value)
    assert theirs.key == mine.key and theirs.partition == mine.partition
    for header in ("event_id", "event_type"):
        assert theirs.headers[header] == mine.headers[header]


def test_retention_drops_an_old_partition_only_once_debeziums_slot_passed_it(relayed, engine, caplog):
    config = relayed
    caplog.set_level(logging.INFO, logger="outbox_relay")
    partition = make_old_partition(engine, "2020-05-19")
    old = insert_dated(engine, 100, "2020-05-19 12:00:00+00")
    on_topic(config, old)
    housekeeper = DebeziumHousekeeper(engine, retention_hours=24, leader_lock=False)
    try:
        housekeeper.housekeeping(force=True)
        # Detached (nothing writes into it any more) with the WAL position of the moment as its fence, but
        # kept: Debezium's slot has confirmed nothing past that fence yet.
        assert partition_exists(engine, partition) and events_partition_of(engine, old) == set()
        assert [name for name, _ in partitions.detached_partitions(engine)] == [partition]
        fence = partitions.detached_partitions(engine)[0][1]
        assert not partitions.captured_past(engine, housekeeper.slot, fence)
        housekeeper.housekeeping(force=True)
        assert partition_exists(engine, partition)
        # Later events: Debezium confirms a transaction's end once it has processed the next one and Connect
        # committed its offsets; then the slot is past the fence and the partition goes.
        def passed() -> bool:
            insert_one(engine)
            return partitions.captured_past(engine, housekeeper.slot, fence)

        wait_until(passed, "Debezium's slot never passed the detached partition's fence", every_s=0.5)
        housekeeper.housekeeping(force=True)
    finally:
        housekeeper.close()
    assert not partition_exists(engine, partition) and partitions.detached_partitions(engine) == []


def test_a_killed_connect_worker_republishes_and_the_worker_counts_no_answer_twice(api: Api, debezium_connect,
                                                                                  relayed, engine,
                                                                                  redis_client):
    """At least once, Debezium's way: SIGKILL the Connect worker while a question's answers flow; the
    restarted worker (its connector from its file, as the stack's) resumes from the slot's confirmed
    position, republishing what it had produced since its last offset commit. Nothing is lost; what was
    republished is counted; the cache worker's scores equal PostgreSQL's."""
    config = relayed
    host = api.host()
    session = api.live_session(host, sample_questions(1))
    players = [api.join(session["id"], api.guest()) for _ in range(60)]
    opened = api.next_question(session["id"], host)
    for player in players[:30]:
        api.answer(session["id"], player, opened["question_id"], hash(player.user_id) % 4)
    debezium_connect.kill_worker()
    for player in players[30:]:
        api.answer(session["id"], player, opened["question_id"], hash(player.user_id) % 4)
    api.close_question(session["id"], host)
    debezium_connect.start_worker(connector_of=config)
    debezium.wait_running(config)
    with engine.connect() as conn:
        ids = [str(i) for i in conn.execute(text("SELECT id FROM events WHERE aggregate_id = :s"),
                                            {"s": session["id"]}).scalars()]
    found = on_topic(config, ids)
    republished = sum(len(found[e]) - 1 for e in ids)
    logging.getLogger(__name__).warning("Debezium republished %d of %d events after the kill", republished,
                                        len(ids))
    expected = pg_scores(engine, session["id"])
    worker = new_worker(config, engine, redis_client)
    try:
        def board_built() -> bool:
            worker.run_once()
            return redis_scores(redis_client, session["id"]) == expected

        wait_until(board_built, "the board never matched PostgreSQL after Connect was killed")
    finally:
        worker.close()
    assert len(expected) == 60


def test_the_relay_process_under_debezium_creates_partitions_ahead_and_publishes_nothing(config, engine):
    relay = build_relay(config.replace(relay_mode="debezium", relay_partition_days_ahead=4),
                        leader_lock=False, serve_metrics=False)
    with engine.connect() as conn:
        ahead = conn.execute(text("SELECT 'events_p' || to_char((now() AT TIME ZONE 'UTC')::date + 4, "
                                  "'YYYYMMDD')")).scalar()
    with engine.begin() as conn:  # a day to come: no row in it yet
        conn.execute(text(f"DROP TABLE IF EXISTS {ahead}"))
    try:
        assert isinstance(relay, DebeziumHousekeeper) and relay.producer is None
        assert relay.relay_batch().claimed == 0
        relay.housekeeping(force=True)
    finally:
        relay.close()
    assert partition_exists(engine, ahead)


def test_ops_shows_debeziums_slot_and_the_backlog_it_has_delivered(relayed, engine):
    from app import create_app

    config = relayed.replace(relay_mode="debezium")
    runner = create_app(config).test_cli_runner()
    on_topic(config, [insert_one(engine)])  # the connector streams from its slot
    shown = runner.invoke(args=["ops", "relay-slot"])
    assert shown.exit_code == 0, shown.output
    assert f"relay slot {engine_slot_name(engine, 'debezium')}: active (pid " in shown.output
    housekeeper = DebeziumHousekeeper(engine, leader_lock=False)
    try:
        first = insert_one(engine)
        on_topic(config, [first])
        housekeeper.advance_fence()  # the head now: everything committed before it is to be delivered

        def delivered() -> bool:
            insert_one(engine)  # Debezium confirms a transaction once it processed the next one
            return housekeeper.advance_fence()

        wait_until(delivered, "Debezium's slot never passed the head", every_s=0.5)
    finally:
        housekeeper.close()
    backlog = runner.invoke(args=["ops", "outbox"])
    assert backlog.exit_code == 0, backlog.output
    # What committed before the head the slot passed counts as published (nothing is marked under Debezium).
    published, params = published_condition(engine, "debezium")
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM events WHERE id = :id AND {published}"),
                            {"id": first, **params}).scalar() == 1
