"""Periods decided by PostgreSQL's clock in the board's time zone, each closed exactly once, with no
write landing in a closed one: at a boundary under concurrent writers, on DST days, at ISO week 53 and
year ends, and at a manual reset during traffic."""
from __future__ import annotations

import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from app.accounts.users import create_guest
from app.leaderboards.service.boards import create_board, reset_board
from app.leaderboards.service.periods import close_due_periods
from app.leaderboards.service.scores import submit_scores
from app.leaderboards.submissions import Authority, ScoreResult, Submission
from tests.helpers import wait_until


@pytest.fixture(scope="module")
def owner_id(engine):
    from sqlalchemy.orm import Session

    with Session(engine, expire_on_commit=False) as db:
        return create_guest(db, "period owner").id


def _board(engine, owner_id, reset_period: str, tz: str = "UTC", mode: str = "increment") -> str:
    board_id = "t" + uuid.uuid4().hex[:14]
    create_board(engine, owner_id, {"id": board_id, "name": "periods", "sort_order": "desc",
                                    "update_mode": mode, "reset_period": reset_period, "timezone": tz,
                                    "max_entries": None, "self_report_max": None, "metadata": None})
    return board_id


def _period_at(engine, reset_period: str, tz: str, at: datetime):
    with engine.connect() as connection:
        return connection.execute(text("SELECT * FROM leaderboard_period(:r, :tz, :at)"),
                                  {"r": reset_period, "tz": tz, "at": at}).one()


@pytest.mark.parametrize("at, period, starts, hours", [
    # New York leaves DST on 2026-11-01: that day is 25 hours long; it enters DST on 2026-03-08: 23 hours.
    (datetime(2026, 11, 1, 12, tzinfo=UTC), "2026-11-01", datetime(2026, 11, 1, 4, tzinfo=UTC), 25),
    (datetime(2026, 11, 1, 3, 59, tzinfo=UTC), "2026-10-31", datetime(2026, 10, 31, 4, tzinfo=UTC), 24),
    (datetime(2026, 3, 8, 12, tzinfo=UTC), "2026-03-08", datetime(2026, 3, 8, 5, tzinfo=UTC), 23),
])
def test_a_day_is_the_board_time_zones_day_dst_included(engine, at, period, starts, hours):
    row = _period_at(engine, "daily", "America/New_York", at)
    assert (row.period, row.starts_at, row.ends_at - row.starts_at) == (
        period, starts, timedelta(hours=hours))


def test_weeks_months_and_hours_follow_the_calendar(engine):
    week = _period_at(engine, "weekly", "UTC", datetime(2027, 1, 1, 12, tzinfo=UTC))
    assert (week.period, week.starts_at, week.ends_at) == (
        "2026-W53", datetime(2026, 12, 28, tzinfo=UTC), datetime(2027, 1, 4, tzinfo=UTC))  # ISO week 53
    month = _period_at(engine, "monthly", "Asia/Tokyo", datetime(2026, 12, 31, 16, tzinfo=UTC))
    # Tokyo: already 2027
    assert (month.period, month.ends_at) == ("2027-01", datetime(2027, 1, 31, 15, tzinfo=UTC))
    year_end = _period_at(engine, "monthly", "UTC", datetime(2026, 12, 31, 23, 59, tzinfo=UTC))
    assert (year_end.period, year_end.ends_at) == ("2026-12", datetime(2027, 1, 1, tzinfo=UTC))
    # The hour New York repeats when it leaves DST is two periods, named in UTC.
    first = _period_at(engine, "hourly", "America/New_York", datetime(2026, 11, 1, 5, 30, tzinfo=UTC))
    second = _period_at(engine, "hourly", "America/New_York", datetime(2026, 11, 1, 6, 30, tzinfo=UTC))
    assert (first.period, second.period) == ("2026-11-01T05Z", "2026-11-01T06Z")
    assert _period_at(engine, "never", "UTC", datetime(2026, 1, 1, tzinfo=UTC)).period == "all"


def _end_period_soon(engine, board_id: str, seconds: float) -> None:
    with engine.begin() as connection:
        connection.execute(text(
            "UPDATE leaderboard_periods SET ends_at = clock_timestamp() + make_interval(secs => :s) "
            "WHERE leaderboard_id = :b AND closed_at IS NULL"), {"s": seconds, "b": board_id})


def _writers(engine, owner_id, board_id: str, keep_going: threading.Event,
             results: list) -> list[threading.Thread]:
    def write(player: str) -> None:
        while keep_going.is_set():
            [result] = submit_scores(engine, [Submission(board_id, player, 1)], Authority(owner_id=owner_id))
            results.append(result)

    return [threading.Thread(target=write, args=(f"w{i}",), daemon=True) for i in range(4)]


def _audit(engine, board_id: str, results: list) -> dict[str, int]:
    """Every write counted in the period it reported; every closed period's count final."""
    assert results and all(isinstance(r, ScoreResult) for r in results), results[:3]
    per_period = Counter(r.period for r in results)
    with engine.connect() as connection:
        sums = dict(connection.execute(text(
            "SELECT period, sum(score) FROM leaderboard_entries WHERE leaderboard_id = :b GROUP BY period"),
            {"b": board_id}).all())
        closes = connection.execute(text(
            "SELECT payload->>'period' AS period, (payload->>'entry_count')::int AS n FROM events "
            "WHERE aggregate_id = :b AND event_type = 'period_closed'"), {"b": board_id}).all()
        counts = dict(connection.execute(text(
            "SELECT period, count(*) FROM leaderboard_entries "
            "WHERE leaderboard_id = :b AND score IS NOT NULL GROUP BY period"), {"b": board_id}).all())
    assert {p: int(s) for p, s in sums.items()} == dict(per_period)  # increments of 1: one point per write
    assert len({c.period for c in closes}) == len(closes), "a period closed twice"
    for close in closes:
        assert close.n == counts.get(close.period, 0), "a write landed in a closed period"
    return dict(per_period)


def test_writes_straddling_a_boundary_each_count_in_the_period_they_locked(engine, owner_id):
    board_id = _board(engine, owner_id, "hourly")
    keep_going, results = threading.Event(), []
    keep_going.set()
    threads = _writers(engine, owner_id, board_id, keep_going, results)
    for thread in threads:
        thread.start()
    wait_until(lambda: len(results) >= 20, "the writers did not write")
    _end_period_soon(engine, board_id, 0.5)
    closer = threading.Thread(target=lambda: [close_due_periods(engine, final_top=3) for _ in range(40)],
                              daemon=True)
    closer.start()  # the timer racing the writers at the boundary
    wait_until(lambda: len({r.period for r in results}) >= 2 and len(results) >= 60,
               "no write reached the next period")
    keep_going.clear()
    for thread in [*threads, closer]:
        thread.join(60)
    per_period = _audit(engine, board_id, results)
    assert len(per_period) == 2


def test_a_manual_reset_during_traffic_closes_once_and_loses_nothing(engine, owner_id):
    board_id = _board(engine, owner_id, "never")
    keep_going, results = threading.Event(), []
    keep_going.set()
    threads = _writers(engine, owner_id, board_id, keep_going, results)
    for thread in threads:
        thread.start()
    wait_until(lambda: len(results) >= 20, "the writers did not write")
    board = reset_board(engine, owner_id, board_id, final_top=3)
    assert board["current_period"] == "all~2"
    wait_until(lambda: any(r.period == "all~2" for r in results), "no write reached the new period")
    keep_going.clear()
    for thread in threads:
        thread.join(60)
    assert set(_audit(engine, board_id, results)) == {"all", "all~2"}
