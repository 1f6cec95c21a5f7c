"""Reads of a board: players found by the name they show, around-me at the edges, stats equal to
PostgreSQL's, keyset cursors over a board that moves, max_entries, and rebuilds (while writes flow, and
after Redis lost everything)."""
from __future__ import annotations

import random
import threading
import uuid

import pytest
from sqlalchemy import text

from app.accounts.users import create_guest
from app.leaderboards.board.keys import LeaderboardKeys
from app.leaderboards.board.reads import LeaderboardReader
from app.leaderboards.board.rebuild import rebuild_period
from app.leaderboards.board.verify import compare_period
from app.leaderboards.service.boards import create_board, update_board
from app.leaderboards.service.scores import submit_scores
from app.leaderboards.submissions import Authority, Submission
from tests.helpers import wait_until
from tests.integration.leaderboard_support import Applier, board, owner, score


@pytest.fixture(scope="module")
def owner_id(engine):
    from sqlalchemy.orm import Session

    with Session(engine, expire_on_commit=False) as db:
        return create_guest(db, "reads owner").id


@pytest.fixture()
def reader(engine, redis_client):
    return LeaderboardReader(engine, redis_client)


def _board(engine, owner_id, *, order="desc", mode="best", max_entries=None) -> str:
    board_id = "r" + uuid.uuid4().hex[:14]
    create_board(engine, owner_id, {"id": board_id, "name": "reads", "sort_order": order, "update_mode": mode,
                                    "reset_period": "never", "timezone": "UTC", "max_entries": max_entries,
                                    "self_report_max": None, "metadata": None})
    return board_id


def _fill(engine, config, redis_client, owner_id, board_id, scores: dict[str, int]) -> Applier:
    submit_scores(engine, [Submission(board_id, p, s) for p, s in scores.items()],
                  Authority(owner_id=owner_id))
    applier = Applier(config, engine, redis_client)
    applier.catch_up(board_id)
    return applier


@pytest.mark.parametrize("player, expected", [("p0", [1, 2, 3, 4, 5]), ("p1", [1, 2, 3, 4, 5]),
                                              ("p9", [6, 7, 8, 9, 10]), ("p5", [4, 5, 6, 7, 8])])
def test_around_me_keeps_the_window_full_and_the_player_in_it(engine, config, redis_client, owner_id, reader,
                                                              player, expected):
    board_id = _board(engine, owner_id)
    _fill(engine, config, redis_client, owner_id, board_id, {f"p{i}": 100 - i for i in range(10)})
    around = reader.player(board_id, player, period=None, around=2)
    assert [e["rank"] for e in around["entries"]] == expected
    assert player in [e["player_id"] for e in around["entries"]]


def test_around_me_on_a_board_smaller_than_the_window(engine, config, redis_client, owner_id, reader):
    board_id = _board(engine, owner_id)
    _fill(engine, config, redis_client, owner_id, board_id, {"a": 3, "b": 2, "c": 1})
    around = reader.player(board_id, "c", period=None, around=5)
    assert [e["player_id"] for e in around["entries"]] == ["a", "b", "c"] and around["rank"] == 3


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_stats_equal_postgresql_percentile_disc(engine, config, redis_client, owner_id, reader, order):
    board_id = _board(engine, owner_id, order=order)
    values = random.Random(7).sample(range(-500, 5000), 137)
    _fill(engine, config, redis_client, owner_id, board_id, {f"p{i}": v for i, v in enumerate(values)})
    stats = reader.stats(board_id, period=None)
    with engine.connect() as connection:
        truth = connection.execute(text("""
            SELECT count(*), min(score), max(score), sum(score),
                   percentile_disc(0.5) WITHIN GROUP (ORDER BY score) AS p50,
                   percentile_disc(0.9) WITHIN GROUP (ORDER BY score) AS p90,
                   percentile_disc(0.99) WITHIN GROUP (ORDER BY score) AS p99
            FROM leaderboard_entries WHERE leaderboard_id = :b"""), {"b": board_id}).one()
    assert (stats["count"], stats["min"], stats["max"], stats["sum"], stats["p50"], stats["p90"],
            stats["p99"]) == (
        truth[0], truth[1], truth[2], int(truth[3]), truth.p50, truth.p90, truth.p99)


def test_a_cursor_never_shows_an_unchanged_entry_twice_or_skips_it(engine, config, redis_client, owner_id,
                                                                   reader):
    board_id = _board(engine, owner_id, mode="replace")
    applier = _fill(engine, config, redis_client, owner_id, board_id,
                    {f"p{i:02}": 1000 - i for i in range(60)})
    moving = {f"p{i:02}" for i in range(0, 60, 3)}
    seen: list[str] = []
    page = reader.page(board_id, period=None, offset=0, limit=7)
    rng = random.Random(3)
    while page["entries"]:
        seen += [e["player_id"] for e in page["entries"]]
        # Between pages, a third of the players jump anywhere on the board.
        submit_scores(engine, [Submission(board_id, p, rng.randrange(2000)) for p in moving],
                      Authority(owner_id=owner_id))
        applier.catch_up(board_id)
        page = reader.page_after(board_id, page["next_cursor"], 7)
    steady = [p for p in seen if p not in moving]
    assert sorted(steady) == sorted(f"p{i:02}" for i in range(60) if f"p{i:02}" not in moving)
    assert len(steady) == len(set(steady))


def test_max_entries_ranks_only_the_top_and_raising_it_brings_the_rest_back(engine, config, redis_client,
                                                                            owner_id,
                                                                         reader):
    board_id = _board(engine, owner_id, max_entries=3)
    applier = _fill(engine, config, redis_client, owner_id, board_id, {f"p{i}": 10 - i for i in range(5)})
    top = reader.page(board_id, period=None, offset=0, limit=10)
    assert (top["total"], [e["player_id"] for e in top["entries"]]) == (3, ["p0", "p1", "p2"])
    beyond = reader.player(board_id, "p4", period=None)
    assert (beyond["rank"], beyond["score"]) == (None, 6)
    assert reader.stats(board_id, period=None)["count"] == 3
    update_board(engine, owner_id, board_id, {"max_entries": 10})
    applier.catch_up(board_id)
    assert reader.page(board_id, period=None, offset=0, limit=10)["total"] == 5
    assert reader.player(board_id, "p4", period=None)["rank"] == 5


def test_a_rebuild_while_writes_flow_loses_none_of_them(engine, config, redis_client, owner_id):
    board_id = _board(engine, owner_id, mode="increment")
    applier = _fill(engine, config, redis_client, owner_id, board_id, {f"p{i}": 1 for i in range(50)})
    keep_going = threading.Event()
    keep_going.set()

    def write() -> None:
        rng = random.Random()
        while keep_going.is_set():
            submit_scores(engine, [Submission(board_id, f"p{rng.randrange(60)}", 1)],
                          Authority(owner_id=owner_id))
            applier.catch_up(board_id)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    for _ in range(5):
        rebuild_period(engine, redis_client, board_id)
    keep_going.clear()
    writer.join(60)
    applier.catch_up(board_id)
    assert compare_period(engine, redis_client, board_id, "all") == []


def test_a_rebuild_overtaken_by_another_never_swaps_its_older_snapshot_in(engine, config, redis_client,
                                                                          owner_id):
    # Two readers find the period missing and rebuild it; a score lands between their snapshots and its
    # delivery finds the newer board already holding it. The older snapshot must not replace that board.
    board_id = _board(engine, owner_id)
    applier = _fill(engine, config, redis_client, owner_id, board_id, {"a": 5, "b": 7})
    keys = LeaderboardKeys(board_id)
    redis_client.delete(*keys.period("all").all)

    def the_other_rebuild_swaps_first() -> None:
        submit_scores(engine, [Submission(board_id, "c", 9)], Authority(owner_id=owner_id))
        rebuild_period(engine, redis_client, board_id)
        applier.catch_up(board_id)

    rebuild_period(engine, redis_client, board_id, before_swap=the_other_rebuild_swaps_first)
    assert compare_period(engine, redis_client, board_id, "all") == []
    assert redis_client.zcard(keys.period("all").z) == 3


def test_after_redis_lost_everything_a_read_rebuilds_the_board(engine, config, redis_client, owner_id,
                                                               reader):
    board_id = _board(engine, owner_id)
    _fill(engine, config, redis_client, owner_id, board_id, {"a": 5, "b": 7})
    keys = LeaderboardKeys(board_id)
    redis_client.delete(keys.cfg, *keys.period("all").all)
    reader.forget(board_id)
    top = reader.page(board_id, period=None, offset=0, limit=10)
    assert [(e["player_id"], e["score"]) for e in top["entries"]] == [("b", 7), ("a", 5)]
    wait_until(lambda: redis_client.exists(keys.cfg), "the board's configuration was not rebuilt")


class _CountingReader(LeaderboardReader):
    """The web process's reader, counting the standings it reads for ranks."""

    def __init__(self, engine, redis_client):
        super().__init__(engine, redis_client)
        self.standings_read = 0

    def player(self, board_id, player_id, **kwargs):
        self.standings_read += 1
        return super().player(board_id, player_id, **kwargs)


def test_a_batch_naming_one_player_a_thousand_times_reads_their_rank_once(engine, config, redis_client,
                                                                          owner_id):
    board_id = _board(engine, owner_id)
    _fill(engine, config, redis_client, owner_id, board_id, {"ann": 50, "ben": 40})
    results = submit_scores(engine, [Submission(board_id, "ben", n % 30) for n in range(1000)],
                            Authority(owner_id=owner_id))
    assert {r.outcome for r in results} == {"unchanged"}
    reader = _CountingReader(engine, redis_client)
    assert reader.ranks_when_shown(results, 0.0) == {(board_id, "ben"): 2}
    assert reader.standings_read == 1


def test_a_rebuild_keeps_every_player_whatever_their_id(engine, config, redis_client, owner_id, reader):
    # Player ids are any printable text: none may be taken for the rebuild's own bookkeeping.
    board_id = _board(engine, owner_id)
    scores = {"~": 9, "~~": 8, "\u00e9": 7, "-": 6}
    _fill(engine, config, redis_client, owner_id, board_id, scores)
    rebuild_period(engine, redis_client, board_id)
    top = reader.page(board_id, period=None, offset=0, limit=10)
    assert [(e["player_id"], e["score"]) for e in top["entries"]] == list(scores.items())
    assert [reader.player(board_id, p, period=None)["score"] for p in scores] == list(scores.values())


def test_players_are_found_by_the_name_they_show_in_any_case(api, engine):
    who = owner(api)
    board_id = board(api, who)["id"]
    score(api, who, board_id, "p-17", 40, display_name="Lowly Worm")
    score(api, who, board_id, "p-18", 50, display_name="lowly worm")
    score(api, who, board_id, "Lowly", 10)
    found = f"/api/v1/leaderboards/{board_id}/players"
    named = api.get(found, expect=200, name="  LOWLY WORM ").get_json()["players"]
    assert named == [{"player_id": "p-17", "display_name": "Lowly Worm"},
                     {"player_id": "p-18", "display_name": "lowly worm"}]
    # An id is exact; a display name is any case.
    assert api.get(found, expect=200, name="Lowly").get_json()["players"] == [
        {"player_id": "Lowly", "display_name": None}]
    assert api.get(found, expect=200, name="lowly").get_json()["players"] == []
    for bad in ("", "   ", "x" * 129):
        assert api.get(found, expect=400, name=bad).get_json()["error"]["code"]
    api.get(found, expect=400)
    api.get("/api/v1/leaderboards/no-such-board/players", expect=404, name="Ann")
    with engine.begin() as connection:  # an index serves the search: no scan of the whole board
        connection.execute(text("SET LOCAL enable_seqscan = off"))
        plan = connection.execute(text(
            "EXPLAIN SELECT player_id FROM leaderboard_entries WHERE leaderboard_id = 'b' AND period = 'p' "
            "AND lower(display_name) = lower('x')")).scalars().all()
    assert any("ix_leaderboard_entries_name" in line for line in plan), plan
