"""The Lua scripts on their own, against the test Redis (and, via exercise_scripts, a Redis Cluster)."""
from __future__ import annotations

import uuid

import pytest
import redis as redis_lib

from app.quiz.board.apply import answer_key, closed_key, joined_key, opened_key
from app.quiz.board.keys import SessionKeys
from app.quiz.board.scores import MAX_SCORE, composite
from app.quiz.board.scripts import APPLIED, DUPLICATE, NEEDS_REBUILD, SessionBoardScripts

EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def _answer(scripts, client, sid, participant, points, at_ms, question="q0", event_id=None, answer_id=None,
            choice=1, streak=None):
    keys = SessionKeys.of(sid)
    return scripts.apply_answer_scored(keys.apply_keys, [
        event_id or str(uuid.uuid4()), answer_key(answer_id or uuid.uuid4()), participant,
        f"nick-{participant[:4]}", points, EPOCH_MS + at_ms, question, choice, int(points > 0),
        (1 if points > 0 else 0) if streak is None else streak], client=client)


def _join(scripts, client, sid, participant, at_ms, event_id=None):
    keys = SessionKeys.of(sid)
    return scripts.apply_participant_joined(keys.apply_keys, [
        event_id or str(uuid.uuid4()), joined_key(participant), participant, f"nick-{participant[:4]}",
        EPOCH_MS + at_ms], client=client)


def _open(scripts, client, sid, question, points=1000):
    return scripts.apply_question_opened(SessionKeys.of(sid).apply_keys, [
        str(uuid.uuid4()), opened_key(question), question, 0, f'{{"points": {points}}}'], client=client)


def _close(scripts, client, sid, question):
    return scripts.apply_question_closed(SessionKeys.of(sid).apply_keys, [
        str(uuid.uuid4()), closed_key(question), question, 0, "{}"], client=client)


def _results(scripts, client, sid, question, participants):
    keys = SessionKeys.of(sid)
    return scripts.read_question_results([keys.results, keys.board], [question, *participants], client=client)


def _page(scripts, client, sid, offset=0, limit=100):
    keys = SessionKeys.of(sid)
    reply = scripts.read_session_board_page([keys.board, keys.meta, keys.names], [offset, limit],
                                            client=client)
    return [(m.decode(), s) for m, s in zip(reply[2::3], reply[3::3])]


def _version(client, sid) -> int:
    return int(client.hget(SessionKeys.of(sid).meta, "version"))


def exercise_scripts(client) -> None:
    """Every script once, with its dedupe, tie, hiding and swap behaviour; runs on Redis and Redis Cluster."""
    scripts = SessionBoardScripts(client)
    sid = str(uuid.uuid4())
    keys = SessionKeys.of(sid)
    a, b, c = (f"{i}{uuid.uuid4().hex[1:8]}-0000-4000-8000-000000000000" for i in "abc")

    assert _join(scripts, client, sid, a, 10) == NEEDS_REBUILD  # no board yet: nothing written
    assert client.exists(keys.board, keys.applied, keys.room) == 0
    client.hset(keys.meta, mapping={"version": 0, "epoch_ms": EPOCH_MS, "recent_seq": 0})

    join_a = str(uuid.uuid4())
    assert _join(scripts, client, sid, a, 10, event_id=join_a) == APPLIED
    assert _join(scripts, client, sid, a, 10, event_id=join_a) == DUPLICATE
    assert _join(scripts, client, sid, a, 10) == DUPLICATE  # the same join under another event id
    assert _join(scripts, client, sid, b, 20) == APPLIED
    assert _join(scripts, client, sid, c, 30) == APPLIED
    assert _page(scripts, client, sid) == [(a, 0), (b, 0), (c, 0)]  # 0 each: join order

    # c then b reach 1000; c's answer is delivered first but b answered earlier.
    later, earlier, b_answer = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    assert _answer(scripts, client, sid, c, 1000, 5_000, event_id=later) == APPLIED
    assert _answer(scripts, client, sid, b, 1000, 4_000, event_id=earlier, answer_id=b_answer) == APPLIED
    assert _answer(scripts, client, sid, b, 1000, 4_000, event_id=earlier, answer_id=b_answer) == DUPLICATE
    # The same answer under another event id (republished after its event row was pruned).
    answer_id = str(uuid.uuid4())
    assert _answer(scripts, client, sid, a, 0, 6_000, answer_id=answer_id) == APPLIED
    assert _answer(scripts, client, sid, a, 0, 6_000, answer_id=answer_id) == DUPLICATE
    assert _page(scripts, client, sid) == [(b, 1000), (c, 1000), (a, 0)]
    assert _version(client, sid) == 6
    assert _page(scripts, client, sid, offset=1, limit=1) == [(c, 1000)]

    around = scripts.read_session_board_around([keys.board, keys.meta, keys.names], [c, 5], client=client)
    assert around[:3] == [6, 3, 1] and around[3::3] == [b.encode(), c.encode(), a.encode()]
    nobody = scripts.read_session_board_around([keys.board, keys.meta, keys.names], ["nobody", 5],
                                               client=client)
    assert nobody == [0]

    # An open question's answers are held: the board and its version do not move until the close,
    # which adds them all at once, in one version.
    assert _open(scripts, client, sid, "q1") == APPLIED
    assert _answer(scripts, client, sid, a, 700, 8_000, question="q1") == APPLIED
    assert _answer(scripts, client, sid, c, 0, 8_500, question="q1") == APPLIED
    assert _page(scripts, client, sid) == [(b, 1000), (c, 1000), (a, 0)] and _version(client, sid) == 6
    assert _results(scripts, client, sid, "q1", [a]) == [0]  # not closed yet: nobody's result is known
    note = client.xrevrange(keys.room, count=1)[0][1]
    assert note == {b"type": b"answer_received", b"question_id": b"q1", b"participant_id": c.encode(),
                    b"answered": b"2", b"player_count": b"3"}  # how many the board holds
    assert _close(scripts, client, sid, "q1") == APPLIED
    assert _close(scripts, client, sid, "q1") == DUPLICATE
    assert _page(scripts, client, sid) == [(b, 1000), (c, 1000), (a, 700)] and _version(client, sid) == 7
    assert client.exists(keys.pending) == 0 and client.hget(keys.meta, "open_question") is None
    # The closed question's answers, as recorded, with each player's score and rank (from 0) after it:
    # a answered (choice 1, right, 700 points, streak 1), b did not, c answered wrong; "nobody" is not on
    # the board. The question is worth 1000 points.
    assert _results(scripts, client, sid, "q1", [a, b, c, "nobody"]) == [
        1, 1000, b"1:1:700:1", 2, 700, b"", 0, 1000, b"1:0:0:0", 1, 1000, b"", -1, 0]
    assert _results(scripts, client, sid, "q0", [a]) == [0]  # only the last question opened is kept

    # Scores stay exact at the top of the range and out-of-range writes leave nothing behind.
    top = str(uuid.uuid4())
    client.zadd(keys.board, {top: composite(MAX_SCORE - 1, 0)})
    assert _answer(scripts, client, sid, top, 1, 1) == APPLIED
    assert _page(scripts, client, sid, limit=1) == [(top, MAX_SCORE)]
    with pytest.raises(redis_lib.ResponseError):
        _answer(scripts, client, sid, top, 1, 2)
    with pytest.raises(redis_lib.ResponseError):
        scripts.apply_answer_scored([keys.board], ["x"], client=client)  # argument counts are asserted
    assert _version(client, sid) == 8
    mark = int(client.hget(keys.meta, "recent_seq"))
    assert _open(scripts, client, sid, "q2") == APPLIED
    assert _answer(scripts, client, sid, b, 500, 9_000, question="q2") == APPLIED

    # A rebuilt board swapped in: its snapshot holds the joins and b's first answer; everything else
    # the log holds after the snapshot's mark (here the mark is after the joins) is replayed, including
    # q1's held answers and its close, the open q2 and b's answer held for it.
    rebuilt_board, rebuilt_applied, rebuilt_pending = keys.rebuilding("t")
    client.zadd(rebuilt_board, {a: composite(0, 10), b: composite(1000, 4_000), c: composite(0, 30)})
    client.sadd(rebuilt_applied, "session", earlier, join_a, answer_key(b_answer))
    swapped = scripts.swap_rebuilt_session_board(
        [*keys.apply_keys, rebuilt_board, rebuilt_applied, rebuilt_pending], [EPOCH_MS, 3, 2, "", 0, 0],
        client=client)
    # Replayed: c's, a's answers; q1 opened, two held answers, q1 closed; top's +1; q2 opened, b's held.
    assert swapped[0] == 1 and swapped[2] == 9 and mark == 11
    assert _page(scripts, client, sid) == [(b, 1000), (c, 1000), (a, 700), (top, 1)]
    assert client.hget(keys.meta, "open_question") == b"q2"
    assert client.hgetall(keys.pending) == {b.encode(): f"500:{EPOCH_MS + 9_000}".encode()}
    assert client.ttl(keys.board) == -1  # the rebuilt key's TTL did not travel with the rename
    assert client.exists(rebuilt_board, rebuilt_applied, rebuilt_pending) == 0
    # The room learns that notifications the snapshot covered will never come: it resyncs its sockets.
    rebuilt_note = client.xrevrange(keys.room, count=1)[0][1]
    assert rebuilt_note == {b"type": b"board_rebuilt", b"version": str(swapped[1]).encode()}
    assert _close(scripts, client, sid, "q2") == APPLIED  # the held answer survived the swap
    assert _page(scripts, client, sid, limit=1) == [(b, 1500)]
    # The rebuild did not bring back the answers kept for q2's close: readers ask PostgreSQL.
    assert _results(scripts, client, sid, "q2", [b]) == [0]
    # Nor does a close whose question lost a player while it was open (PostgreSQL zeroed their answer).
    assert _open(scripts, client, sid, "q3") == APPLIED
    assert _answer(scripts, client, sid, c, 200, 9_500, question="q3", choice=3, streak=2) == APPLIED
    assert scripts.apply_participant_removed(keys.apply_keys, [str(uuid.uuid4()), f"removed:{a}", a],
                                             client=client) == APPLIED
    assert _close(scripts, client, sid, "q3") == APPLIED
    assert _results(scripts, client, sid, "q3", [c]) == [0]
    assert _open(scripts, client, sid, "q4", points=0) == APPLIED
    assert _close(scripts, client, sid, "q4") == APPLIED
    assert _results(scripts, client, sid, "q4", [c, a]) == [1, 0, b"", 1, 1200, b"", -1, 0]
    # A question whose data does not say its points opens as ever; its close asks PostgreSQL.
    assert scripts.apply_question_opened(keys.apply_keys, [str(uuid.uuid4()), opened_key("q5"), "q5", 0, "x"],
                                         client=client) == APPLIED
    assert _close(scripts, client, sid, "q5") == APPLIED
    assert _results(scripts, client, sid, "q5", [c]) == [0]
    stale = scripts.swap_rebuilt_session_board(
        [*keys.apply_keys, rebuilt_board, rebuilt_applied, rebuilt_pending], [EPOCH_MS, 99, 0, "", 0, 1],
        client=client)
    assert stale[0] == -2  # the rebuilt keys are gone (consumed above): rebuild again
    client.sadd(rebuilt_applied, "session")
    stale = scripts.swap_rebuilt_session_board(
        [*keys.apply_keys, rebuilt_board, rebuilt_applied, rebuilt_pending], [EPOCH_MS, 99, 0, "", 0, 1],
        client=client)
    assert stale[0] == -2  # the log never reached that mark: rebuild again
    client.delete(*keys.apply_keys, rebuilt_applied)


def test_scripts_on_a_single_redis(redis_client):
    exercise_scripts(redis_client)


def test_a_close_stays_readable_after_the_host_opened_the_next_question(redis_client):
    """The host's Next closes the open question and opens the next one in one transaction, both applied
    before the room reads the close: its answers stay readable until the next close, except for a player
    who answered the next question meanwhile, whom Redis no longer knows (readers ask PostgreSQL)."""
    client = redis_client
    scripts = SessionBoardScripts(client)
    sid = str(uuid.uuid4())
    keys = SessionKeys.of(sid)
    a, b, c = (f"{i}{uuid.uuid4().hex[1:8]}-0000-4000-8000-000000000000" for i in "abc")
    client.hset(keys.meta, mapping={"version": 0, "epoch_ms": EPOCH_MS, "recent_seq": 0})
    for player, at_ms in ((a, 10), (b, 20), (c, 30)):
        assert _join(scripts, client, sid, player, at_ms) == APPLIED
    assert _open(scripts, client, sid, "q1") == APPLIED
    assert _answer(scripts, client, sid, a, 700, 1_000, question="q1") == APPLIED
    assert _answer(scripts, client, sid, c, 0, 1_500, question="q1", choice=2) == APPLIED
    assert _close(scripts, client, sid, "q1") == APPLIED
    closed = _results(scripts, client, sid, "q1", [a, b, c])
    assert closed[:3] == [1, 1000, b"1:1:700:1"] and closed[5] == b"" and closed[8] == b"2:0:0:0"

    assert _open(scripts, client, sid, "q2") == APPLIED  # Next: before the room read q1's close
    assert _results(scripts, client, sid, "q1", [a, b, c]) == closed
    assert _answer(scripts, client, sid, b, 500, 3_000, question="q2") == APPLIED
    assert _results(scripts, client, sid, "q1", [a, c]) == [*closed[:5], *closed[8:]]
    assert _results(scripts, client, sid, "q1", [b]) == [0]  # b's answer to q2 took the place of q1's

    # q2's close: q1's answers are of the board before it, no longer readable; q2's are, where a's answer
    # to q1 says a did not answer q2.
    assert _close(scripts, client, sid, "q2") == APPLIED
    assert _results(scripts, client, sid, "q1", [a]) == [0]
    after_q2 = _results(scripts, client, sid, "q2", [a, b])
    assert after_q2[:3] == [1, 1000, b""] and after_q2[5] == b"1:1:500:1"
    # A question whose points are unknown opens untracked: q2 stays readable; its own close is not.
    assert scripts.apply_question_opened(keys.apply_keys, [str(uuid.uuid4()), opened_key("q3"), "q3", 0, "x"],
                                         client=client) == APPLIED
    assert _results(scripts, client, sid, "q2", [a, b]) == after_q2
    assert _close(scripts, client, sid, "q3") == APPLIED
    assert _results(scripts, client, sid, "q3", [a]) == [0]
    assert _results(scripts, client, sid, "q2", [a]) == [0]
