"""The web's timers forget submission ids past their retention (app/web/timers.py): one round deletes
every one of them, a batch (PURGE_BATCH) per transaction until a short batch, and nothing within the
retention; a round past its time budget stops after the batch it is in, and says it is not done."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from app.web import timers

BATCH = 10  # a small batch, so that a round needs several


@pytest.fixture()
def board(engine, monkeypatch):
    monkeypatch.setattr(timers, "PURGE_BATCH", BATCH)
    board = "purge-test"
    with engine.begin() as db:
        for prefix, age_h in (("old", 30), ("kept", 0)):
            db.execute(text("""
                INSERT INTO score_submissions (leaderboard_id, submission_id, fingerprint, result, created_at)
                SELECT :b, :p || n, md5(n::text), '{"outcome": "changed"}',
                       clock_timestamp() - make_interval(hours => :age)
                FROM generate_series(1, :n) AS n"""),
                {"b": board, "p": prefix, "age": age_h, "n": 3 * BATCH + 7})
    yield board
    with engine.begin() as db:
        db.execute(text("DELETE FROM score_submissions WHERE leaderboard_id = :b"), {"b": board})


def _left(engine, board: str) -> dict[str, int]:
    with engine.connect() as db:
        rows = db.execute(text("SELECT left(submission_id, 3), count(*) FROM score_submissions "
                               "WHERE leaderboard_id = :b GROUP BY 1"), {"b": board}).all()
    return dict(rows)


def test_one_round_forgets_every_submission_past_its_retention(engine, board):
    forgotten = timers.forget_old_submissions(engine, retention_hours=24)
    assert forgotten == timers.Purged(deleted=3 * BATCH + 7, done=True)
    assert _left(engine, board) == {"kep": 3 * BATCH + 7}


def test_a_round_past_its_budget_stops_after_a_batch_and_the_next_goes_on(engine, board):
    first = timers.forget_old_submissions(engine, retention_hours=24, budget_s=0)
    assert first == timers.Purged(deleted=BATCH, done=False)
    assert _left(engine, board) == {"old": 2 * BATCH + 7, "kep": 3 * BATCH + 7}
    rest = timers.forget_old_submissions(engine, retention_hours=24)
    assert rest == timers.Purged(deleted=2 * BATCH + 7, done=True)
    assert _left(engine, board) == {"kep": 3 * BATCH + 7}
