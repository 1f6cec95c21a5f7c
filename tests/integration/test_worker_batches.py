"""The worker's batches against real Redis and PostgreSQL: one apply_batch call per session or board (per
BATCH_CHUNK of its events) must keep every rule of the one-event scripts: each aggregate's order, dedupe
within a batch, a rebuild in the middle of a run, runs longer than a chunk. (The same on a Redis
Cluster: tests/integration/test_redis_cluster.py.)"""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from itertools import zip_longest

from app.core.events import Envelope, envelope_from_row
from app.core.lua import BATCH_CHUNK, Call, pack_batch
from app.leaderboards.board.apply import forget_board
from app.quiz.board.keys import SessionKeys
from app.quiz.board.scores import MAX_SCORE
from app.quiz.board.scripts import SessionBoardScripts
from app.quiz.events import QUIZ_SESSION, SESSION_EVENTS, AnswerScored, SessionEnded
from cache_worker.process import projections
from cache_worker.worker import CacheWorker, _Pending
from tests.events import EVENTS
from tests.integration.leaderboard_support import board, board_events, owner, score
from tests.integration.relay.support import read_topic
from tests.integration.test_leaderboard_order import _postgres, _redis
from tests.integration.test_worker import _epoch
from tests.integration.worker_support import (
    drain,
    event_rows,
    new_worker,
    pg_ranking,
    pg_scores,
    play,
    publish_raw,
    redis_ranking,
    redis_scores,
)


def _pending(envelopes) -> list[_Pending]:
    return [_Pending(None, envelope, EVENTS.parse(envelope)) for envelope in envelopes]


def _from_rows(rows) -> list[Envelope]:
    return [envelope_from_row(row) for row in rows]


def live_board(redis_client, engine, sid: str) -> None:
    """A board Redis holds from before the session's events: each of them then goes through its script
    (instead of a rebuild that would already hold them all)."""
    redis_client.hset(SessionKeys.of(sid).meta, mapping={"version": 0, "epoch_ms": _epoch(engine, sid),
                                                         "recent_seq": 0})


def _room_types(redis_client, sid: str) -> list[str]:
    return [fields[b"type"].decode() for _, fields in redis_client.xrange(SessionKeys.of(sid).room)]


def _expected_room_types(rows) -> list[str]:
    # An answer to the open question only tells the room that someone answered (test_worker.py).
    return [{"answer_scored": "answer_received"}.get(row.event_type, row.event_type) for row in rows]


def _answer(sid: str, participant_id: str, points: int, at: datetime) -> Envelope:
    participant = uuid.UUID(participant_id)
    return Envelope(uuid.uuid4(), "answer_scored", 1, QUIZ_SESSION, sid, at, SESSION_EVENTS.payload_for(
        "answer_scored", AnswerScored(answer_id=uuid.uuid4(), participant_id=participant, user_id=participant,
                                      nickname="batch", question_id=uuid.uuid4(), choice=0, correct=True,
                                      points=points, streak=1, answered_ms=100, answered_at=at, total=0)))


def _applied(worker: CacheWorker) -> int:
    return int(sum(c._value.get() for c in worker.metrics.applied._metrics.values()))


def test_a_batch_mixing_sessions_and_boards_applies_each_in_its_order(api, engine, redis_client, config):
    sessions = [play(api, players=2, questions=1)["id"] for _ in range(3)]
    who = owner(api)
    boards = [board(api, who)["id"] for _ in range(2)]
    for board_id in boards:
        for player, value in (("ann", 30), ("bob", 20), ("ann", 45), ("cy", 25)):
            score(api, who, board_id, player, value)
    for sid in sessions:
        live_board(redis_client, engine, sid)
    for board_id in boards:
        # the service's boards are missing: rebuilt in the middle of the batch
        forget_board(redis_client, board_id)
    streams = [event_rows(engine, sid) for sid in sessions] + [board_events(engine, b) for b in boards]
    # One batch, each aggregate's events in order but interleaved with every other's.
    mixed = [row for rows in zip_longest(*streams) for row in rows if row is not None]

    worker = CacheWorker(config, consumer=None, producer=None, redis=redis_client,
                         projections=projections(config, redis_client, engine))
    worker.apply_events(_pending(_from_rows(mixed)))

    for sid, rows in zip(sessions, streams):
        assert _room_types(redis_client, sid) == _expected_room_types(rows)  # every event, in its order
        assert redis_scores(redis_client, sid) == pg_scores(engine, sid)
        assert redis_ranking(redis_client, sid) == pg_ranking(engine, sid)
    for board_id in boards:
        assert _redis(redis_client, board_id) == _postgres(engine, board_id, "desc") == [
            ("ann", 45), ("cy", 25), ("bob", 20)]
    assert worker.metrics.rebuilds._value.get() == len(boards)  # each board once, none of the sessions


def test_duplicates_within_one_batch_are_applied_once(api, engine, redis_client, config):
    sid = play(api, players=3, questions=2)["id"]
    live_board(redis_client, engine, sid)
    rows = event_rows(engine, sid)
    twice = [row for row in rows for _ in range(2)] + rows  # each event again at once, then all again

    worker = CacheWorker(config, consumer=None, producer=None, redis=redis_client,
                         projections=projections(config, redis_client, engine))
    worker.apply_events(_pending(_from_rows(twice)))

    assert _applied(worker) == len(rows)
    assert worker.metrics.duplicates._value.get() == 2 * len(rows)
    assert _room_types(redis_client, sid) == _expected_room_types(rows)  # one notification each
    assert redis_scores(redis_client, sid) == pg_scores(engine, sid)
    assert any(points > 0 for points in pg_scores(engine, sid).values())


def test_a_rebuild_in_the_middle_of_a_sessions_run(api, engine, redis_client, config):
    """The session's keys vanish half way through its run (its end, replayed after the keys' retention,
    expires them at once): the events before are applied, those after are refused, the session is
    rebuilt from PostgreSQL and they are replayed onto it, none lost and none counted twice."""
    sid = play(api, players=3, questions=2)["id"]
    live_board(redis_client, engine, sid)
    rows = event_rows(engine, sid)
    half = len(rows) // 2
    long_ago = datetime.now(UTC) - timedelta(days=30)
    ended = Envelope(uuid.uuid4(), "session_ended", 1, QUIZ_SESSION, sid, long_ago,
                     SESSION_EVENTS.payload_for("session_ended", SessionEnded(ended_at=long_ago)))
    run = _from_rows(rows[:half]) + [ended] + _from_rows(rows[half:])

    worker = CacheWorker(config, consumer=None, producer=None, redis=redis_client,
                         projections=projections(config, redis_client, engine))
    worker.apply_events(_pending(run))

    assert worker.metrics.rebuilds._value.get() == 1
    assert _applied(worker) == half + 1  # those before, and the end itself
    assert worker.metrics.duplicates._value.get() == len(rows) - half  # the rebuilt board holds the rest
    assert redis_scores(redis_client, sid) == pg_scores(engine, sid)
    assert redis_ranking(redis_client, sid) == pg_ranking(engine, sid)
    assert _room_types(redis_client, sid)[-1] == "board_rebuilt"
    assert redis_client.ttl(SessionKeys.of(sid).board) == -1  # PostgreSQL says it has not ended: no expiry


def test_a_run_longer_than_a_chunk(api, engine, redis_client, config):
    """More answers of one session than one call carries: several calls, in order, none lost, and the
    same answer in the first and the last call counted once."""
    session = play(api, players=3, questions=1)
    sid, players = session["id"], session["players"]
    rows = event_rows(engine, sid)
    now = datetime.now(UTC)
    answers, added = [], {p.participant_id: 0 for p in players}
    for i in range(2 * BATCH_CHUNK + 50):
        player = players[i % len(players)].participant_id
        points = 1 + i % 7
        added[player] += points
        answers.append(_answer(sid, player, points, now + timedelta(milliseconds=i)))
    run = _from_rows(rows) + answers + answers[:1]  # the first answer delivered again in the last call
    assert len(run) > 2 * BATCH_CHUNK

    worker = CacheWorker(config, consumer=None, producer=None, redis=redis_client,
                         projections=projections(config, redis_client, engine))
    worker.apply_events(_pending(run))  # no board yet: rebuilt first, then every refused event replayed

    expected = {pid: points + added.get(pid, 0) for pid, points in pg_scores(engine, sid).items()}
    assert redis_scores(redis_client, sid) == expected
    assert worker.metrics.rebuilds._value.get() == 1
    assert _applied(worker) == len(answers)  # the played events are in the rebuilt board already
    assert worker.metrics.duplicates._value.get() == len(rows) + 1


def test_an_event_redis_refuses_is_dead_lettered_and_the_rest_of_its_call_applied(api, engine, redis_client,
                                                                                  topics):
    """One answer the script refuses (a score beyond its range) in the middle of a session's call: it
    alone goes to the dead-letter topic, having changed nothing; the events around it are applied."""
    session = play(api, players=2, questions=1)
    sid, first, second = session["id"], *(p.participant_id for p in session["players"])
    rows = event_rows(engine, sid)
    now = datetime.now(UTC)
    refused = _answer(sid, first, MAX_SCORE + 1, now)
    after = _answer(sid, second, 40, now + timedelta(seconds=1))
    for envelope in [*_from_rows(rows), refused, after]:
        publish_raw(topics, sid.encode(), envelope.to_json(), envelope.headers())
    live_board(redis_client, engine, sid)

    worker = new_worker(topics, engine, redis_client)
    drain(worker, len(rows) + 2)
    worker.close()

    expected = pg_scores(engine, sid)
    expected[second] += 40
    assert redis_scores(redis_client, sid) == expected  # nothing of the refused answer
    assert _applied(worker) == len(rows) + 1
    [dead] = read_topic(topics.kafka_bootstrap_servers, topics.kafka_dlq_topic)
    assert dead.value == refused.to_json()
    assert dead.headers["dlq_reason"].decode().startswith("rejected_by_redis:")
    assert "outside" in dead.headers["dlq_reason"].decode()


def test_text_reaches_redis_byte_for_byte_through_a_batch(redis_client):
    sid = str(uuid.uuid4())
    keys = SessionKeys.of(sid)
    redis_client.hset(keys.meta, mapping={"version": 0, "epoch_ms": 1_767_225_600_000, "recent_seq": 0})
    nickname = 'Zoë "ü" \\ 🎉 سلام'
    joined = Call("apply_participant_joined", keys.apply_keys,
                  [str(uuid.uuid4()), "joined:p1", "p1", nickname, 1_767_225_600_001])
    assert SessionBoardScripts(redis_client).apply_batch(*pack_batch([joined])) == [1]
    assert redis_client.hget(keys.names, "p1").decode() == nickname
    redis_client.delete(*keys.apply_keys)
