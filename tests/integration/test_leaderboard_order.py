"""One order everywhere: random sequences of writes in every mode and sort order leave PostgreSQL, Redis
and a pure model of the rules agreeing on every score and on the order (ties to who got there first),
and no delivery order of the events changes what Redis holds."""
from __future__ import annotations

import random
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from app.accounts.users import create_guest
from app.core.events import envelope_from_row
from app.leaderboards.board.keys import LeaderboardKeys
from app.leaderboards.board.reads import page_of
from app.leaderboards.board.scripts import leaderboard_scripts
from app.leaderboards.domain import SORT_ORDERS, UPDATE_MODES, apply_score, ranking_sql
from app.leaderboards.service.boards import create_board
from app.leaderboards.service.scores import remove_player, submit_scores
from app.leaderboards.submissions import Authority, Submission
from tests.integration.leaderboard_support import Applier, board_events

PLAYERS = ["ann", "ben", "cat", "dan", "eve"]
writes = st.lists(st.tuples(st.sampled_from(PLAYERS), st.integers(-3, 6)), min_size=1, max_size=30)


@pytest.fixture(scope="module")
def owner_id(engine):
    from sqlalchemy.orm import Session

    with Session(engine, expire_on_commit=False) as db:
        return create_guest(db, "board owner").id


def _new_board(engine, owner_id, mode: str, order: str) -> str:
    board_id = "p" + uuid.uuid4().hex[:14]
    create_board(engine, owner_id, {"id": board_id, "name": "property", "sort_order": order,
                                    "update_mode": mode, "reset_period": "never", "timezone": "UTC",
                                    "max_entries": None, "self_report_max": None, "metadata": None})
    return board_id


def _model(mode: str, order: str, sequence) -> list[tuple[str, int]]:
    """The rules alone: each change takes the next tie position, the order is score then position."""
    entries: dict[str, tuple[int, int]] = {}
    for position, (player, value) in enumerate(sequence):
        current = entries.get(player, (None, None))[0]
        changed, new = apply_score(mode, order, current, value)
        if changed:
            entries[player] = (new, position)
    sign = -1 if order == "desc" else 1
    return [(p, s) for p, (s, _) in sorted(entries.items(), key=lambda kv: (sign * kv[1][0], kv[1][1]))]


def _postgres(engine, board_id: str, order: str) -> list[tuple[str, int]]:
    with engine.connect() as connection:
        return [tuple(r) for r in connection.execute(text(
            f"SELECT player_id, score FROM leaderboard_entries "
            f"WHERE leaderboard_id = :b AND score IS NOT NULL ORDER BY {ranking_sql(order)}"),
            {"b": board_id})]


def _redis(redis_client, board_id: str) -> list[tuple[str, int]]:
    keys = LeaderboardKeys(board_id).period("all")
    reply = leaderboard_scripts(redis_client).leaderboard_read_range(keys.read_keys, [0, 100])
    return [(e["player_id"], e["score"]) for e in page_of(board_id, "all", reply)["entries"]]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mode=st.sampled_from(UPDATE_MODES), order=st.sampled_from(SORT_ORDERS), sequence=writes)
def test_postgres_redis_and_the_model_agree(engine, redis_client, config, owner_id, mode, order, sequence):
    board_id = _new_board(engine, owner_id, mode, order)
    for player, value in sequence:  # one write at a time: the model's positions are the writes' order
        [result] = submit_scores(engine, [Submission(board_id, player, value)], Authority(owner_id=owner_id))
        assert not isinstance(result, Exception), result
    applier = Applier(config, engine, redis_client)
    applier.catch_up(board_id)
    expected = _model(mode, order, sequence)
    assert _postgres(engine, board_id, order) == expected
    assert _redis(redis_client, board_id) == expected


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mode=st.sampled_from(UPDATE_MODES), order=st.sampled_from(SORT_ORDERS), sequence=writes,
       seed=st.integers(0, 2 ** 32))
def test_any_delivery_order_and_any_redelivery_leave_redis_the_same(engine, redis_client, config, owner_id,
                                                                    mode,
                                                                     order, sequence, seed):
    board_id = _new_board(engine, owner_id, mode, order)
    owner = Authority(owner_id=owner_id)
    submit_scores(engine, [Submission(board_id, p, v) for p, v in sequence], owner)
    removed = sequence[0][0]
    remove_player(engine, owner_id, board_id, removed)
    rows = board_events(engine, board_id)
    in_order = Applier(config, engine, redis_client)
    in_order.apply_rows(rows)
    expected = _redis(redis_client, board_id)
    assert removed not in {p for p, _ in expected}
    # The same events again, shuffled, each twice: nothing changes, and the removed entry stays removed.
    shuffled = list(rows) * 2
    random.Random(seed).shuffle(shuffled)
    in_order.apply_rows(shuffled)
    assert _redis(redis_client, board_id) == expected == _postgres(engine, board_id, order)


def test_a_removed_entry_cannot_come_back_from_a_stale_event(engine, redis_client, config, owner_id):
    board_id = _new_board(engine, owner_id, "replace", "desc")
    owner = Authority(owner_id=owner_id)
    submit_scores(engine, [Submission(board_id, "ann", 10), Submission(board_id, "ben", 5)], owner)
    applier = Applier(config, engine, redis_client)
    applier.catch_up(board_id)
    stale = [r for r in board_events(engine, board_id) if r.event_type == "entry_changed"
             and envelope_from_row(r).payload["player_id"] == "ann"]
    remove_player(engine, owner_id, board_id, "ann")
    applier.catch_up(board_id)
    applier.apply_rows(stale)  # a redelivery of ann's score, after her removal
    assert _redis(redis_client, board_id) == [("ben", 5)]
    # A new score after the removal counts from nothing, with a version above the removal's.
    submit_scores(engine, [Submission(board_id, "ann", 3)], owner)
    applier.catch_up(board_id)
    assert _redis(redis_client, board_id) == [("ben", 5), ("ann", 3)]


def test_score_events_get_time_ordered_ids_like_every_other_row(engine, owner_id):
    """A batch of score writes makes its events' ids in SQL: version 7, their millisecond the write's."""
    board_id = _new_board(engine, owner_id, "increment", "desc")
    before = time.time_ns() // 1_000_000
    submit_scores(engine, [Submission(board_id, f"p{i}", i + 1) for i in range(20)],
                  Authority(owner_id=owner_id))
    after = time.time_ns() // 1_000_000
    ids = [row.id for row in board_events(engine, board_id) if row.event_type == "entry_changed"]
    assert len(ids) == 20 and len(set(ids)) == 20
    for made in ids:
        assert made.version == 7 and made.variant == uuid.RFC_4122
        assert before - 1000 <= made.int >> 80 <= after + 1000  # PostgreSQL's clock, not this process's
