"""A write's submissions folded by entry: a batch, however often it names one player, leaves what the
same submissions sent one at a time leave (every result, the entries and their order, the submission
ids kept for retries, the activity), in PostgreSQL and in Redis, and writes each entry once."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.accounts.users import create_guest
from app.leaderboards.domain import MAX_EXACT, SORT_ORDERS, UPDATE_MODES, ranking_sql
from app.leaderboards.service.boards import create_board
from app.leaderboards.service.scores import submit_scores
from app.leaderboards.submissions import Authority, ScoreResult, Submission
from tests.integration.leaderboard_support import Applier, board_events
from tests.integration.test_leaderboard_order import _new_board, _postgres, _redis


@dataclass(frozen=True)
class Item:
    player: str
    score: int
    submission_id: str | None
    display_name: str | None
    metadata: dict[str, Any] | None
    action: str | None

    def on(self, board_id: str) -> Submission:
        return Submission(board_id, self.player, self.score, self.display_name, self.metadata,
                          self.submission_id, self.action)


# Small values tie often; the edges of the exact range make increments overflow (and a later one fit).
values = st.integers(-3, 6) | st.sampled_from([MAX_EXACT, -MAX_EXACT, MAX_EXACT - 2])
items = st.builds(Item, player=st.sampled_from(["ann", "ben", "cat"]), score=values,
                  submission_id=st.sampled_from([None, None, "s1", "s2", "s3"]),
                  display_name=st.sampled_from([None, "Ann", "Bee"]),
                  metadata=st.sampled_from([None, {"level": 1}, {"level": 2}]),
                  action=st.sampled_from([None, "jump"]))


@pytest.fixture(scope="module")
def owner_id(engine):
    with Session(engine, expire_on_commit=False) as db:
        return create_guest(db, "board owner").id


def _seen(result) -> tuple:
    """A result as its client sees it, whichever board it was written to."""
    if isinstance(result, ScoreResult):
        return ("result", {**result.view(), "leaderboard_id": None}, result.version, result.replayed)
    return ("error", result.code)


def _state(engine, board_id: str, order: str, sent: list[Item]) -> dict[str, Any]:
    """What a board holds: its entries in order, the submission ids kept (and which submission holds
    each), the activity."""
    with engine.connect() as connection:
        entries = [tuple(r) for r in connection.execute(text(
            f"SELECT player_id, score, previous_score, version, display_name, metadata "
            f"FROM leaderboard_entries WHERE leaderboard_id = :b ORDER BY {ranking_sql(order)}, player_id"),
            {"b": board_id})]
        kept = connection.execute(text(
            "SELECT submission_id, fingerprint, result FROM score_submissions WHERE leaderboard_id = :b"),
            {"b": board_id}).all()
        activity = [tuple(r) for r in connection.execute(text(
            "SELECT player_id, action, points FROM player_activity WHERE leaderboard_id = :b ORDER BY id"),
            {"b": board_id})]
    prints = [item.on(board_id).fingerprint() for item in sent]
    ids = {r.submission_id: (prints.index(r.fingerprint), {**r.result, "leaderboard_id": None}) for r in kept}
    return {"entries": entries, "ids": ids, "activity": activity}


def _versions(engine, board_id: str) -> dict[str, int]:
    with engine.connect() as connection:
        return dict(connection.execute(text(
            "SELECT player_id, version FROM leaderboard_entries WHERE leaderboard_id = :b"),
            {"b": board_id}).all())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mode=st.sampled_from(UPDATE_MODES), order=st.sampled_from(SORT_ORDERS),
       before=st.lists(items, max_size=6), batch=st.lists(items, min_size=1, max_size=25))
@example(mode="increment", order="desc", before=[Item("ann", MAX_EXACT - 2, None, None, None, None)], batch=[
    Item("ann", 6, "s1", None, None, None),  # leaves the range: s1 stays free...
    Item("ann", -6, None, None, None, None),
    Item("ann", 6, "s1", None, None, None),  # ...so the same submission, sent again, counts now
    Item("ben", 1, "s2", None, None, None), Item("ben", 6, "s2", None, None, None)])  # s2 taken: a conflict
def test_a_batch_leaves_what_its_submissions_one_at_a_time_leave(engine, redis_client, config, owner_id, mode,
                                                                 order,
                                                                  before, batch):
    owner = Authority(owner_id=owner_id)
    folded, one_by_one = _new_board(engine, owner_id, mode, order), _new_board(engine, owner_id, mode, order)
    for board_id in (folded, one_by_one):  # the same history first: entries, and ids already kept
        for item in before:
            submit_scores(engine, [item.on(board_id)], owner)
    versions = _versions(engine, folded)
    seq = len(board_events(engine, folded))

    at_once = submit_scores(engine, [item.on(folded) for item in batch], owner)
    singly = [submit_scores(engine, [item.on(one_by_one)], owner)[0] for item in batch]

    assert [_seen(r) for r in at_once] == [_seen(r) for r in singly]
    assert _state(engine, folded, order, before + batch) == _state(engine, one_by_one, order, before + batch)
    # One event per entry the batch changed, however many of its submissions changed it.
    changed = {p for p, v in _versions(engine, folded).items() if v != versions.get(p)}
    written = [r for r in board_events(engine, folded)[seq:] if r.event_type == "entry_changed"]
    assert sorted(r.payload["player_id"] for r in written) == sorted(changed)
    applier = Applier(config, engine, redis_client)
    applier.catch_up(folded)
    assert _redis(redis_client, folded) == _postgres(engine, folded, order)


def test_a_batch_naming_one_player_a_thousand_times_writes_one_entry_once(engine, owner_id):
    board_id = _new_board(engine, owner_id, "increment", "desc")
    results = submit_scores(engine, [Submission(board_id, "ann", 1, metadata={"n": n}) for n in range(1000)],
                            Authority(owner_id=owner_id))
    assert [(r.outcome, r.score, r.previous_score, r.version) for r in results] == [
        ("changed", n + 1, n or None, n + 1) for n in range(1000)]
    events = [r for r in board_events(engine, board_id) if r.event_type == "entry_changed"]
    assert [(e.payload["score"], e.payload["version"]) for e in events] == [(1000, 1000)]
    with engine.connect() as connection:
        row = connection.execute(text("SELECT score, previous_score, version, metadata "
                                      "FROM leaderboard_entries WHERE leaderboard_id = :b"),
                                 {"b": board_id}).one()
    assert tuple(row) == (1000, 999, 1000, {"n": 999})


def test_a_retried_action_is_kept_once(engine, owner_id):
    board_id = "a" + uuid.uuid4().hex[:14]
    create_board(engine, owner_id, {"id": board_id, "name": "actions", "sort_order": "desc",
                                    "update_mode": "increment", "reset_period": "never", "timezone": "UTC",
                                    "max_entries": None, "self_report_max": 10, "metadata": None})
    player = Authority(self_report=True)
    jump = Submission(board_id, "ann", 3, submission_id="a1", action="jump")
    first = submit_scores(engine, [jump], player, source="self_report")
    again = submit_scores(engine, [jump, jump,
                                   Submission(board_id, "ann", 2, submission_id="a2", action="run")],
                          player, source="self_report")
    assert [(r.score, r.replayed) for r in first + again] == [(3, False), (3, True), (3, True), (5, False)]
    with engine.connect() as connection:
        kept = connection.execute(text("SELECT action, points FROM player_activity WHERE leaderboard_id = :b "
                                       "ORDER BY id"), {"b": board_id}).all()
    assert [tuple(r) for r in kept] == [("jump", 3), ("run", 2)]
