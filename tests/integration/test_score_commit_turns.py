"""The web process's group commit of scores takes each client in turn: one owner's flood of 1,000-score
batches cannot hold another owner's single score behind it."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.accounts.users import create_guest
from app.leaderboards.service.batcher import ScoreBatcher
from app.leaderboards.submissions import Authority, ScoreRequest, ScoreResult, Submission
from tests.helpers import WAIT_S, wait_until
from tests.integration.test_leaderboard_order import _new_board

MAX_SCORES = 1000


class _NotingBatcher(ScoreBatcher):
    """The web process's batcher, noting the requests each of its transactions holds."""

    def __init__(self, engine):
        super().__init__(engine, max_batch=100, max_scores=MAX_SCORES)
        self.transactions: list[list[ScoreRequest]] = []

    def commit_many(self, requests):
        self.transactions.append(list(requests))
        return super().commit_many(requests)


def test_another_owners_score_is_committed_in_the_next_transaction_not_after_the_flood(engine):
    with Session(engine, expire_on_commit=False) as db:
        flooding, other = create_guest(db, "flooding owner").id, create_guest(db, "other owner").id
    flooded_board = _new_board(engine, flooding, "increment", "desc")
    other_board = _new_board(engine, other, "best", "desc")
    floods = [ScoreRequest(tuple(Submission(flooded_board, f"p{n}", 1) for _ in range(1000)),
                           Authority(owner_id=flooding), "batch") for n in range(5)]
    single = ScoreRequest((Submission(other_board, "ann", 7),), Authority(owner_id=other))
    batcher = _NotingBatcher(engine)
    with engine.connect() as holder, ThreadPoolExecutor(max_workers=8) as pool:
        # The flooding owner's first batch waits for its board's period, which this test holds locked,
        # while the rest of its batches and the other owner's score queue up behind it.
        with holder.begin():
            holder.execute(text("SELECT 1 FROM leaderboard_periods "
                                "WHERE leaderboard_id = :b AND closed_at IS NULL FOR UPDATE"),
                           {"b": flooded_board})
            written = [pool.submit(batcher.submit, floods[0])]
            wait_until(lambda: len(batcher.transactions) == 1, "the first batch is being committed")
            written += [pool.submit(batcher.submit, request) for request in floods[1:]]
            wait_until(lambda: batcher.waiting() == 4, "the flooding owner's batches wait")
            written.append(pool.submit(batcher.submit, single))
            wait_until(lambda: batcher.waiting() == 5, "the other owner's score waits")
        results = [future.result(timeout=WAIT_S) for future in written]

    assert all(isinstance(r, ScoreResult) for request_results in results for r in request_results)
    assert [r.score for r in results[0]] == list(range(1, 1001)) and results[-1][0].score == 7
    assert batcher.transactions[0] == [floods[0]]
    # The next transaction takes the other owner's score, and no more of the flood than its bound allows.
    assert single in batcher.transactions[1]
    assert sum(len(request.submissions) for request in batcher.transactions[1]) <= MAX_SCORES
    # Nothing was left behind: every batch of the flood was committed after it, each once.
    assert sorted(floods.index(r) for t in batcher.transactions[1:]
                  for r in t if r is not single) == [1, 2, 3, 4]
