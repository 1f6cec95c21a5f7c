"""Rebuilding a board from PostgreSQL while events keep being applied."""
from __future__ import annotations

from sqlalchemy import text

from app.core import redis_keys
from app.core.events import envelope_from_row
from app.quiz.board.apply import apply_event
from app.quiz.board.rebuild import rebuild_session_board
from app.quiz.board.scripts import APPLIED, DUPLICATE, session_board_scripts
from app.quiz.events import AnswerScored
from tests.events import EVENTS
from tests.integration.worker_support import (
    event_rows,
    pg_ranking,
    pg_scores,
    play,
    redis_ranking,
    redis_scores,
)


def _apply_rows(redis_client, rows) -> list[int]:
    scripts = session_board_scripts(redis_client)
    return [apply_event(scripts, redis_client, envelope_from_row(row)) for row in rows]


def test_events_committed_during_a_rebuild_are_neither_lost_nor_double_counted(api, engine, redis_client):
    # The live board is up to date; the open question's answers have not been applied yet.
    fresh = _session_with_open_question(api)
    sid, players, question = fresh["id"], fresh["players"], fresh["question"]
    rebuild_session_board(engine, redis_client, sid)
    assert redis_scores(redis_client, sid) == pg_scores(engine, sid)
    seen = {row.id for row in event_rows(engine, sid)}
    # Players 0 and 1 answer before the rebuild's snapshot; the worker has not applied them yet.
    api.answer(sid, players[0], question["question_id"], question["correct"])
    api.answer(sid, players[1], question["question_id"], question["correct"])
    before_snapshot = [r for r in event_rows(engine, sid) if r.id not in seen]
    seen |= {r.id for r in before_snapshot}
    during: list = []

    def between_snapshot_and_swap() -> None:
        # Players 2 and 3 answer after the snapshot; the worker applies their events to the live board.
        api.answer(sid, players[2], question["question_id"], question["correct"])
        api.answer(sid, players[3], question["question_id"], (question["correct"] + 1) % 4)
        during.extend(r for r in event_rows(engine, sid) if r.id not in seen)
        assert _apply_rows(redis_client, during) == [APPLIED, APPLIED]

    rebuilt = rebuild_session_board(engine, redis_client, sid, before_swap=between_snapshot_and_swap)
    assert rebuilt.replayed == 2
    assert redis_scores(redis_client, sid) == pg_scores(engine, sid)
    assert redis_ranking(redis_client, sid) == pg_ranking(engine, sid)
    # The snapshot's events, delivered late, and the replayed ones, delivered again, are duplicates.
    assert _apply_rows(redis_client, before_snapshot + during) == [DUPLICATE] * 4
    assert redis_scores(redis_client, sid) == pg_scores(engine, sid)
    assert any(EVENTS.parse(envelope_from_row(r)).points > 0 for r in before_snapshot + during
               if isinstance(EVENTS.parse(envelope_from_row(r)), AnswerScored))


def test_dedupe_survives_pruned_event_rows(api, engine, redis_client):
    """After the relay deleted published rows, the natural keys still catch a replay."""
    session = play(api, players=3, questions=2)
    sid = session["id"]
    rows = event_rows(engine, sid)
    rebuild_session_board(engine, redis_client, sid)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM events WHERE aggregate_id = :s"), {"s": sid})
    # its keys expired, or Redis was flushed
    redis_client.delete(*redis_client.scan_iter(match=redis_keys.pattern(f"*{{{sid}}}*")))
    rebuild_session_board(engine, redis_client, sid)
    assert set(_apply_rows(redis_client, rows)) == {DUPLICATE}
    assert redis_scores(redis_client, sid) == pg_scores(engine, sid)


def test_a_rebuild_overtaken_by_another_never_swaps_its_older_snapshot_in(api, engine, redis_client):
    """The host's socket and the worker both find a board missing and both rebuild it: the rebuild whose
    snapshot is older must not replace the newer one's board (a player who joined in between vanished
    from the board and from the host's lobby, their join counted as applied by the newer swap)."""
    session = play(api, players=3, questions=1)
    sid = session["id"]
    for key in redis_client.scan_iter(match=redis_keys.pattern(f"*{{{sid}}}*")):
        redis_client.delete(key)  # the board is missing (expired, flushed, or never built)
    seen = {row.id for row in event_rows(engine, sid)}
    late: list = []

    def the_other_rebuild_swaps_first() -> None:
        api.join(sid, api.guest())
        late.extend(r for r in event_rows(engine, sid) if r.id not in seen)
        rebuild_session_board(engine, redis_client, sid)

    rebuild_session_board(engine, redis_client, sid, before_swap=the_other_rebuild_swaps_first)
    assert len(pg_scores(engine, sid)) == 4
    assert redis_scores(redis_client, sid) == pg_scores(engine, sid)
    assert _apply_rows(redis_client, late) == [DUPLICATE]  # the newer snapshot's join stays applied once
    assert redis_scores(redis_client, sid) == pg_scores(engine, sid)
    assert not list(redis_client.scan_iter(match=redis_keys.pattern(f"*{{{sid}}}*rebuild*")))


def _session_with_open_question(api):
    from tests.helpers import sample_questions

    host = api.host()
    questions = sample_questions(2, time_limit_s=240)
    created = api.live_session(host, questions)
    sid = created["id"]
    players = [api.join(sid, api.guest()) for _ in range(4)]
    first = api.next_question(sid, host)
    api.answer(sid, players[0], first["question_id"], questions[0]["correct_choice"])
    api.answer(sid, players[2], first["question_id"], questions[0]["correct_choice"])
    second = api.next_question(sid, host)
    return {"id": sid, "host": host, "players": players,
            "question": {"question_id": second["question_id"], "correct": questions[1]["correct_choice"]}}
