"""Group commit of the web process's score requests (app/group_commit.py)."""
from __future__ import annotations

from sqlalchemy import Engine

from app.group_commit import CommitFailed, GroupCommit
from app.leaderboards.scores import ScoreRequest, ScoreResult, submit_score_requests
from app.services.errors import ServiceError


class ScoreBatcher(GroupCommit[ScoreRequest, list]):
    """A request whose every submission has a submission_id can be written again safely; one without
    cannot tell, after a failed COMMIT, whether an increment counted, so its outcome is unknown."""

    what = "score"

    def __init__(self, engine: Engine, max_batch: int = 200, final_top: int = 10):
        super().__init__(engine, max_batch)
        self.final_top = final_top

    def commit_many(self, requests: list[ScoreRequest]) -> list[list[ScoreResult | ServiceError]]:
        return submit_score_requests(self.engine, requests, final_top=self.final_top)

    def retry_is_safe(self, request: ScoreRequest) -> bool:
        return all(s.submission_id for s in request.submissions)

    def recorded(self, request: ScoreRequest) -> list[ScoreResult | ServiceError] | None:
        if not self.retry_is_safe(request):
            return None
        try:
            return self.commit_many([request])[0]  # the stored results of its submission ids, or written now
        except CommitFailed:
            return None
