"""The operator CLI (`flask ops ...`) against the real PostgreSQL, Redis and Kafka.

Each test has topics and a consumer group of its own, an app built on them (so the commands
publish where the in-process worker consumes), and plays sessions through the HTTP write path.
The relay is stood in for by publishing a session's rows and marking them published.
"""
from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from app import create_app
from app.core.events import envelope_from_row
from app.core.kafka import make_producer
from app.core.outbox import drop_slots_of_database, engine_slot_name
from app.leaderboards.board.keys import LeaderboardKeys
from app.leaderboards.board.verify import cached_periods, compare_period
from app.quiz.board.keys import SessionKeys
from app.quiz.board.scores import TIE_SPAN
from tests.helpers import WAIT_S, drop_prefix_keys, stack_env
from tests.integration import leaderboard_support as lb
from tests.integration.worker_support import (
    drain,
    event_rows,
    new_worker,
    pg_ranking,
    pg_scores,
    play,
    publish,
    publish_raw,
    redis_ranking,
    redis_scores,
)

ROOT = Path(__file__).resolve().parents[2]


def publish_as_relay(config, engine, session_id: str) -> int:
    """Publish a session's events like the relay does, and mark them published as it would."""
    rows = event_rows(engine, session_id)
    publish(config, rows)
    with engine.begin() as connection:
        connection.execute(text("UPDATE events SET published_at = now() WHERE id = ANY(:ids)"),
                           {"ids": [row.id for row in rows]})
    return len(rows)


@pytest.fixture()
def ops_app(topics, engine, redis_client):
    return create_app(topics)


@pytest.fixture()
def worker(topics, engine, redis_client):
    worker = new_worker(topics, engine, redis_client)
    yield worker
    worker.close()


def run_ops(app, *args: str, expect: int | None = 0):
    result = app.test_cli_runner().invoke(args=["ops", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    if expect is not None:
        assert result.exit_code == expect, result.output
    return result


def summary(result) -> str:
    return result.output.strip().splitlines()[-1]


def sent_count(result) -> int:
    return int(re.search(r": (\d+) (?:events|dead letters)", summary(result)).group(1))


def applied_played_session(api, topics, engine, worker, **play_args) -> str:
    sid = play(api, **play_args)["id"]
    drain(worker, publish_as_relay(topics, engine, sid))
    assert redis_scores(worker.redis, sid) == pg_scores(engine, sid)
    return sid


def board_state(redis_client, sid: str):
    keys = SessionKeys.of(sid)
    return redis_client.zrange(keys.board, 0, -1, withscores=True), redis_client.hget(keys.meta, "version")


def counters(worker) -> dict[str, float]:
    def total(counter) -> float:
        return sum(sample.value for metric in counter.collect() for sample in metric.samples
                   if sample.name.endswith("_total"))

    m = worker.metrics
    return {"applied": total(m.applied), "duplicates": total(m.duplicates), "rebuilds": total(m.rebuilds),
            "dead_lettered": total(m.dead_lettered)}


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in before}


def flask_ops(config, *args: str) -> subprocess.CompletedProcess:
    """The real entry point, as an operator types it."""
    return subprocess.run([sys.executable, "-m", "flask", "--app", "app", "ops", *args], cwd=ROOT,
                          env=stack_env(config), capture_output=True, text=True, timeout=300)


def test_verify_finds_a_planted_difference_and_rebuild_repairs_it(api, topics, engine, redis_client, worker,
                                                                  ops_app):
    sid = applied_played_session(api, topics, engine, worker)
    assert "verify: 1 sessions checked, 0 differ" in summary(run_ops(ops_app, "verify", "--session", sid))

    scores = pg_scores(engine, sid)
    raised, removed, later = sorted(scores)[:3]
    board = SessionKeys.of(sid).board
    composite = int(redis_client.zscore(board, raised))
    redis_client.zadd(board, {raised: composite + 7 * TIE_SPAN}, xx=True)
    redis_client.zrem(board, removed)
    # reached 5 ms later
    redis_client.zadd(board, {later: int(redis_client.zscore(board, later)) - 5}, xx=True)

    result = run_ops(ops_app, "verify", "--session", sid, "--settle", "0", expect=1)
    assert (f"differs  session={sid} participant={raised} redis={scores[raised] + 7} "
            f"postgres={scores[raised]}") in result.output
    assert f"differs  session={sid} participant={removed} redis=missing postgres={scores[removed]}" \
        in result.output
    assert f"participant={later} redis={scores[later]} postgres={scores[later]} tie-break" in result.output
    assert "1 differ (3 participants)" in summary(result)
    assert re.search(r"outbox lag [\d.]+ s \(\d+ unpublished\); dead letters 0 \(0 pending\)",
                     summary(result))

    run_ops(ops_app, "rebuild", "--session", sid)
    run_ops(ops_app, "verify", "--session", sid)
    assert redis_ranking(redis_client, sid) == pg_ranking(engine, sid)

    # The real entry point and its exit codes, over every board of the test Redis database.
    redis_client.zadd(board, {raised: composite + TIE_SPAN}, xx=True)
    found = flask_ops(topics, "verify", "--all", "--settle", "0")
    assert found.returncode == 1, found.stdout + found.stderr
    assert f"participant={raised} redis={scores[raised] + 1} postgres={scores[raised]}" in found.stdout
    repaired = flask_ops(topics, "rebuild", "--all")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert re.search(r"rebuild: [1-9]\d* boards rebuilt", repaired.stdout.strip().splitlines()[-1])
    agreed = flask_ops(topics, "verify", "--all")
    assert agreed.returncode == 0, agreed.stdout + agreed.stderr
    assert re.search(r"verify: [1-9]\d* sessions checked, 0 differ", agreed.stdout.strip().splitlines()[-1])


def test_verify_fails_for_a_session_nobody_knows(ops_app):
    result = run_ops(ops_app, "verify", "--session", str(uuid.uuid4()), expect=1)
    assert "1 unknown" in summary(result)


def test_replaying_a_session_twice_leaves_its_board_unchanged(api, topics, engine, redis_client, worker,
                                                              ops_app):
    sid = applied_played_session(api, topics, engine, worker)
    events = len(event_rows(engine, sid))
    before = board_state(redis_client, sid)
    for _ in range(2):
        start = counters(worker)
        sent = sent_count(run_ops(ops_app, "replay", "--session", sid))
        assert sent == events
        drain(worker, sent)
        assert delta(start, counters(worker)) == {"applied": 0, "duplicates": events, "rebuilds": 0,
                                                  "dead_lettered": 0}
        assert board_state(redis_client, sid) == before


def test_replay_applies_every_event_to_a_consumer_that_lost_its_state(api, topics, engine, redis_client,
                                                                      worker, ops_app):
    # The board and dedupe set are gone but the session's metadata is not, so the scripts apply
    # what arrives instead of rebuilding from PostgreSQL: the board comes from the replay alone.
    sid = applied_played_session(api, topics, engine, worker, players=5, questions=3)
    keys = SessionKeys.of(sid)
    redis_client.delete(keys.board, keys.applied)
    events = len(event_rows(engine, sid))
    start = counters(worker)
    drain(worker, sent_count(run_ops(ops_app, "replay", "--session", sid)))
    assert delta(start, counters(worker)) == {"applied": events, "duplicates": 0, "rebuilds": 0,
                                              "dead_lettered": 0}
    assert redis_scores(redis_client, sid) == pg_scores(engine, sid)
    assert redis_ranking(redis_client, sid) == pg_ranking(engine, sid)
    run_ops(ops_app, "verify", "--session", sid)


def test_after_flushing_redis_replay_alone_restores_every_board(api, topics, engine, redis_client, worker,
                                                                ops_app):
    with engine.connect() as connection:
        since = connection.execute(text("SELECT now()")).scalar_one()
    sessions = [applied_played_session(api, topics, engine, worker) for _ in range(2)]
    with engine.connect() as connection:
        replayable = connection.execute(text(
            "SELECT count(*) FROM events WHERE published_at IS NOT NULL AND created_at >= :since"),
            {"since": since}).scalar_one()
    drop_prefix_keys(redis_client)  # this run's keys only: never FLUSHDB, others share the Redis
    assert not any(redis_client.exists(SessionKeys.of(sid).board, SessionKeys.of(sid).meta)
                   for sid in sessions)

    start = counters(worker)
    sent = sent_count(run_ops(ops_app, "replay", "--all", "--since", since.isoformat()))
    assert sent == replayable
    drain(worker, sent)
    change = delta(start, counters(worker))
    # A flushed session has no metadata: its first replayed event makes the worker rebuild the
    # board from PostgreSQL, and every replayed event is then a duplicate of that snapshot.
    assert change["applied"] + change["duplicates"] == sent and change["dead_lettered"] == 0
    assert change["rebuilds"] >= len(sessions)
    for sid in sessions:
        assert redis_scores(redis_client, sid) == pg_scores(engine, sid)
        assert redis_ranking(redis_client, sid) == pg_ranking(engine, sid)
    run_ops(ops_app, "verify", *[arg for sid in sessions for arg in ("--session", sid)])


def test_a_poison_event_is_listed_and_a_redriven_dead_letter_is_applied_once(api, topics, engine,
                                                                             redis_client, worker, ops_app):
    sid = applied_played_session(api, topics, engine, worker)
    # Dead-lettered while valid (as for a session unknown at the time): a join the board lacks.
    late = api.join(sid, api.guest())
    row = next(r for r in event_rows(engine, sid) if r.event_type == "participant_joined"
               and r.payload["participant_id"] == late.participant_id)
    envelope = envelope_from_row(row)
    producer = make_producer(topics)
    producer.produce(topics.kafka_dlq_topic, key=envelope.key(), value=envelope.to_json(),
                     headers=envelope.headers() + [("dlq_reason", b"unknown_session: not in PostgreSQL")])
    assert producer.flush(WAIT_S) == 0
    publish_raw(topics, sid.encode(), b"{not json")
    drain(worker, 1)

    listed = run_ops(ops_app, "dlq", "list")
    lines = listed.output.splitlines()
    assert any("event=-" in line and f"key={sid}" in line and "reason=undecodable message" in line
               and "pending" in line for line in lines)
    assert any(f"event={envelope.event_id}" in line and "type=participant_joined" in line
               and "reason=unknown_session" in line for line in lines)
    assert summary(listed).startswith("dlq: 2 dead letters") and "2 pending" in summary(listed)
    missing = run_ops(ops_app, "verify", "--session", sid, "--settle", "0", expect=1)
    assert f"participant={late.participant_id} redis=missing" in missing.output
    assert "dead letters 2 (2 pending)" in summary(missing)

    start = counters(worker)
    redriven = run_ops(ops_app, "dlq", "redrive")
    assert summary(redriven) == (f"redrive: 1 dead letters sent to {topics.kafka_topic}, "
                                 "1 still undecodable, 0 not found")
    drain(worker, 1)
    assert delta(start, counters(worker))["applied"] == 1
    assert "dead letters 2 (0 pending)" in summary(run_ops(ops_app, "verify", "--session", sid))
    assert redis_scores(redis_client, sid) == pg_scores(engine, sid)

    # Twice: nothing is pending any more; naming the event sends it again, and it is skipped.
    assert sent_count(run_ops(ops_app, "dlq", "redrive")) == 0
    again = run_ops(ops_app, "dlq", "redrive", "--id", str(envelope.event_id))
    assert sent_count(again) == 1
    drain(worker, 1)
    assert delta(start, counters(worker)) == {"applied": 1, "duplicates": 1, "rebuilds": 0,
                                              "dead_lettered": 0}
    assert redis_scores(redis_client, sid) == pg_scores(engine, sid)
    assert "0 pending" in summary(run_ops(ops_app, "dlq", "list"))

    unknown = run_ops(ops_app, "dlq", "redrive", "--id", str(uuid.uuid4()), expect=1)
    assert "1 not found" in summary(unknown)


def test_outbox_reports_backlog_and_published_history(api, topics, engine, ops_app):
    session = api.live_session(api.host())
    api.join(session["id"], api.guest())  # an unpublished event: no relay runs here
    result = run_ops(ops_app, "outbox")
    match = re.fullmatch(r"outbox: (\d+) unpublished, (\d+) published \(retained\), "
                         r"oldest unpublished ([\d.]+) s old", summary(result))
    assert match and int(match.group(1)) >= 1
    with engine.connect() as connection:
        age = connection.execute(text(
            "SELECT EXTRACT(EPOCH FROM clock_timestamp() - min(created_at)) FROM events "
            "WHERE published_at IS NULL")).scalar_one()
    assert float(age) > 0
    run_ops(ops_app, "outbox", "--max-lag", "0", expect=1)
    run_ops(ops_app, "outbox", "--max-lag", str(float(age) + 3600))


def test_relay_slot_shows_debeziums_slot_beside_ours_whatever_the_shells_relay_mode(config, engine):
    """A stack started with RELAY_MODE=debezium reads Debezium's slot; an operator's shell without the
    variable (wal) is shown it too, named as Debezium's, beside our relay's."""
    debezium, ours = engine_slot_name(engine, "debezium"), engine_slot_name(engine, "wal")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        drop_slots_of_database(conn, engine.url.database, only=debezium)
        conn.execute(text("SELECT pg_create_logical_replication_slot(:slot, 'pgoutput')"), {"slot": debezium})
    try:
        lines = run_ops(create_app(config.replace(relay_mode="wal")), "relay-slot").output.splitlines()
    finally:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            drop_slots_of_database(conn, engine.url.database, only=debezium)
    theirs_shown = (rf"relay slot {debezium}: inactive, wal_status \w+, confirmed [0-9A-F/]+, "
                    r"\d+ bytes behind \(Debezium's, RELAY_MODE=debezium\)")
    ours_shown = rf"relay slot {ours}: .+ \(our relay's, RELAY_MODE=wal\)"  # none, or left by a relay test
    assert len(lines) == 2, lines
    assert re.fullmatch(ours_shown, lines[0]) and re.fullmatch(theirs_shown, lines[1]), lines


def test_board_commands_verify_rebuild_and_replay_a_leaderboard(api, topics, engine, redis_client, worker,
                                                                ops_app):
    who = lb.owner(api)
    board_id = lb.board(api, who)["id"]
    for n, player in enumerate(["ann", "bob", "cy", "dee"]):
        lb.score(api, who, board_id, player, 100 + 10 * n)
    drain(worker, publish_as_relay(topics, engine, board_id))
    period = cached_periods(redis_client, board_id)[0]
    assert compare_period(engine, redis_client, board_id, period) == []
    checked = summary(run_ops(ops_app, "verify", "--board", board_id))
    assert "0 differ" in checked and "1 board periods checked" in checked

    keys = LeaderboardKeys(board_id).period(period)
    ranked = {member.decode()[17:]: member for member in redis_client.zrange(keys.z, 0, -1)}
    redis_client.zadd(keys.z, {ranked["ann"]: -999}, xx=True)
    redis_client.zrem(keys.z, ranked["bob"])
    result = run_ops(ops_app, "verify", "--board", board_id, "--period", period, "--settle", "0", expect=1)
    assert f"differs  board={board_id} period={period} player=ann redis=999 postgres=100" in result.output
    assert f"differs  board={board_id} period={period} player=bob redis=missing postgres=110" in result.output
    assert "1 differ (2 participants)" in summary(result)

    assert re.search(r"rebuild: 1 board periods rebuilt \(4 entries\)",
                     summary(run_ops(ops_app, "rebuild", "--board", board_id)))
    assert compare_period(engine, redis_client, board_id, period) == []
    before = redis_client.zrange(keys.z, 0, -1, withscores=True)

    events = len(event_rows(engine, board_id))
    start = counters(worker)
    drain(worker, sent_count(run_ops(ops_app, "replay", "--board", board_id)))
    assert delta(start, counters(worker)) == {"applied": 0, "duplicates": events, "rebuilds": 0,
                                              "dead_lettered": 0}
    assert redis_client.zrange(keys.z, 0, -1, withscores=True) == before

    assert "unknown board" in run_ops(ops_app, "rebuild", "--board", "no-such-board", expect=1).output


def test_verify_reports_a_board_member_not_in_the_services_format_as_drift(api, topics, engine, redis_client,
                                                                             worker, ops_app):
    who = lb.owner(api)
    board_id = lb.board(api, who)["id"]
    lb.score(api, who, board_id, "ann", 100)
    drain(worker, publish_as_relay(topics, engine, board_id))
    period = cached_periods(redis_client, board_id)[0]
    keys = LeaderboardKeys(board_id).period(period)
    redis_client.zadd(keys.z, {"not-a-member": -5, "zzzzzzzzzzzzzzzz:bob": -7})
    result = run_ops(ops_app, "verify", "--board", board_id, "--settle", "0", expect=1)
    assert f"differs  board={board_id} period={period} member='not-a-member' redis=malformed" in result.output
    assert f"differs  board={board_id} period={period} member='zzzzzzzzzzzzzzzz:bob' redis=malformed" \
        in result.output
    assert "player=ann" not in result.output  # the well-formed entry still agrees
    assert "1 differ (2 participants)" in summary(result)
