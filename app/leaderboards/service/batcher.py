"""Group commit of the web process's score requests (app/core/group_commit.py), each client in its turn.

A client is whoever writes: a board's owner (with their token or any of their API keys), a player
reporting their own actions, or the anonymous clients of seed 000 together. A request costs its
number of submissions, and a transaction holds at most SCORE_COMMIT_MAX_SCORES of them: an owner
sending batches of 1,000 scores as fast as it can delays another owner's single score by about one
such batch, not by all it has in flight.
"""
from __future__ import annotations

from collections.abc import Hashable

from sqlalchemy import Engine

from app.core.errors import ServiceError
from app.core.group_commit import CommitFailed, GroupCommit
from app.leaderboards.service.scores import submit_score_requests
from app.leaderboards.submissions import ScoreRequest, ScoreResult


class ScoreBatcher(GroupCommit[ScoreRequest, list]):
    """A request whose every submission has a submission_id can be written again safely; one without
    cannot tell, after a failed COMMIT, whether an increment counted, so its outcome is unknown."""

    what = "score"

    def __init__(self, engine: Engine, max_batch: int = 200, max_scores: int | None = None,
                 final_top: int = 10):
        super().__init__(engine, max_batch, max_cost=max_scores)
        self.final_top = final_top

    def commit_many(self, requests: list[ScoreRequest]) -> list[list[ScoreResult | ServiceError]]:
        return submit_score_requests(self.engine, requests, final_top=self.final_top)

    def client_of(self, request: ScoreRequest) -> Hashable:
        authority = request.authority
        if authority.owner_id is not None:
            return authority.owner_id
        if authority.self_report:
            return ("player", request.submissions[0].player_id)
        return None

    def cost(self, request: ScoreRequest) -> int:
        return max(1, len(request.submissions))

    def retry_is_safe(self, request: ScoreRequest) -> bool:
        return all(s.submission_id for s in request.submissions)

    def recorded(self, request: ScoreRequest) -> list[ScoreResult | ServiceError] | None:
        if not self.retry_is_safe(request):
            return None
        try:
            return self.commit_many([request])[0]  # the stored results of its submission ids, or written now
        except CommitFailed:
            return None
