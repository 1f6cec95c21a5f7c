"""What the fault tests hold the cluster to, each as a state of PostgreSQL, Kafka and Redis.

- Every acknowledged answer is in PostgreSQL, once (`recorded_once`).
- Every event of the games' sessions is published (`wait_published`), and on the topic, with each
  session's first copies in the order PostgreSQL wrote them (`in_kafka_in_order`); the relay publishes
  at least once, so later copies are allowed.
- The worker's group has caught up (`wait_caught_up`), and each session's board in Redis equals
  PostgreSQL (`board_differences`, the check behind `flask ops verify`).
"""
from __future__ import annotations

import pytest
from confluent_kafka import Consumer
from sqlalchemy import text

from app.core.config import Config
from app.core.outbox import SLOT_MODES, engine_slot_name, published_condition
from app.quiz.board.verify import compare_session_board
from tests.chaos.converge import consumer_lag
from tests.cluster.game import Game
from tests.helpers import wait_until
from tests.integration.relay.support import by_event_id, read_topic

_EVENTS = """
    SELECT id::text, aggregate_id AS session_id, created_at, {published} AS published FROM events
    WHERE aggregate_id = ANY(:sessions) ORDER BY created_at, seq"""

_CAUGHT_UP = text("SELECT caught_up_at FROM outbox_capture WHERE slot_name = :slot")
_SLOT_STATE = text("""
    SELECT confirmed_flush_lsn::text AS confirmed, pg_current_wal_lsn()::text AS head, active
    FROM pg_replication_slots WHERE slot_name = :slot""")

_ANSWERS = text("""
    SELECT a.quiz_session_participant_id::text, a.question_id::text, count(*) FROM participant_answers a
    JOIN quiz_session_participants p ON p.id = a.quiz_session_participant_id
    WHERE p.quiz_session_id = CAST(:session AS uuid) GROUP BY 1, 2""")


def session_ids(games: list[Game]) -> list[str]:
    return [game.session_id for game in games]


def events_of(engine, games: list[Game], mode: str, boards: tuple[str, ...] = ()) -> list:
    """The games' events (and those of the leaderboards `boards`), each with whether the relay of `mode`
    (RELAY_MODE) has published it."""
    condition, params = published_condition(engine, mode)
    with engine.connect() as db:
        return db.execute(text(_EVENTS.format(published=condition)),
                          {"sessions": session_ids(games) + list(boards), **params}).all()


def wait_published(engine, games: list[Game], mode: str, timeout_s: float | None = None,
                   boards: tuple[str, ...] = ()) -> list:
    """The games' events (and the leaderboards `boards`'), once every one of them is published."""
    def published():
        rows = events_of(engine, games, mode, boards)
        return rows if rows and all(row.published for row in rows) else None

    kwargs = {} if timeout_s is None else {"timeout_s": timeout_s}
    try:
        return wait_until(published, "the games' events were not all published", **kwargs)
    except pytest.fail.Exception as exc:
        pytest.fail(f"{exc.msg}: {unpublished_state(engine, games, mode, boards)}", pytrace=False)


def unpublished_state(engine, games: list[Game], mode: str, boards: tuple[str, ...] = ()) -> str:
    """What a failed `wait_published` says: how many events are not published yet, and in a slot mode
    the relay's capture record and its slot against the WAL head (a slot behind it: nothing confirmed the
    last transactions; a slot at it: the capture record is what lags)."""
    rows = events_of(engine, games, mode, boards)
    waiting = [row for row in rows if not row.published]
    said = f"{len(waiting)} of {len(rows)} unpublished" + (
        f", the oldest created {waiting[0].created_at.isoformat()}" if waiting else "")
    if mode in SLOT_MODES:
        slot = engine_slot_name(engine, mode)
        with engine.connect() as db:
            caught_up = db.execute(_CAUGHT_UP, {"slot": slot}).scalar()
            state = db.execute(_SLOT_STATE, {"slot": slot}).one_or_none()
        said += f"; {slot}: caught up at {caught_up.isoformat() if caught_up else None}, " + (
            f"confirmed {state.confirmed} of the WAL head {state.head} (active: {state.active})"
            if state else "no such slot")
    return said


def recorded_once(engine, game: Game) -> None:
    with engine.connect() as db:
        counts = {(row[0], row[1]): row[2] for row in db.execute(_ANSWERS, {"session": game.session_id})}
    assert game.acknowledged, "the game acknowledged no answer"
    missing = game.acknowledged - counts.keys()
    assert not missing, f"{len(missing)} acknowledged answers are not in PostgreSQL"
    assert all(n == 1 for n in counts.values()), "a player answered a question twice"


def in_kafka_in_order(config: Config, rows: list) -> dict:
    """Every event of `rows` is on the topic, each session's in PostgreSQL's order (first copies, by
    offset; a session is one key, so one partition). Returns the copies found, by event id."""
    found = by_event_id(read_topic(config.kafka_bootstrap_servers, config.kafka_topic))
    missing = [row.id for row in rows if row.id not in found]
    assert not missing, f"{len(missing)} of {len(rows)} published events are not on {config.kafka_topic}"
    for session in {row.session_id for row in rows}:
        expected = [row.id for row in rows if row.session_id == session]
        first = sorted((found[event][0] for event in expected), key=lambda m: m.offset)
        assert len({m.partition for m in first}) == 1, f"session {session} is on several partitions"
        assert [m.event_id for m in first] == expected, \
            f"session {session}'s events are out of order on Kafka"
    return found


def wait_caught_up(config: Config) -> None:
    """The workers' group has committed every message of the topic."""
    consumer = Consumer({"bootstrap.servers": config.kafka_bootstrap_servers,
                         "group.id": config.kafka_consumer_group, "enable.auto.commit": False})
    try:
        wait_until(lambda: consumer_lag(consumer, config.kafka_topic) == 0, "the workers did not catch up")
    finally:
        consumer.close()


def board_differences(engine, redis, game: Game) -> list:
    """What `ops verify` would print for the game's board (None counts: the board must be cached)."""
    differences = compare_session_board(engine, redis, game.session_id)
    assert differences is not None, f"no board of session {game.session_id} in Redis"
    return differences


def wait_boards_equal(engine, redis, games: list[Game]) -> None:
    for game in games:
        wait_until(lambda game=game: compare_session_board(engine, redis, game.session_id) == [],
                   f"the board of {game.session_id} did not come to equal PostgreSQL")
