"""A score submission: as a game server sends it, by HTTP or on Kafka (`ScoreBody`: the fields POST /scores
and a score message share, validated once for both), as the write path takes it (`Submission`, with who
sends it: `Authority`, in a `ScoreRequest`), and what it gets back (`ScoreResult`)."""
from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints

from app.core.errors import Forbidden, Unprocessable
from app.core.tracing import current_traceparent
from app.core.validation import TRIMMED, WHOLE, Strict
from app.leaderboards.domain import BOARD_ID, MAX_EXACT, METADATA_MAX_BYTES, check_metadata

Exact = Annotated[int, Field(ge=-MAX_EXACT, le=MAX_EXACT), WHOLE]
Slug = Annotated[str, StringConstraints(pattern=BOARD_ID.pattern)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$"),
                  TRIMMED]
PlayerId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
SubmissionId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
# JSON Schema has no keyword for the size of a value's encoding: the document states check_metadata's
# bound in words and in an extension keyword.
Metadata = Annotated[dict[str, Any], Field(
    max_length=50, description=f"at most {METADATA_MAX_BYTES} bytes as compact UTF-8 JSON",
    json_schema_extra={"x-max-json-bytes": METADATA_MAX_BYTES}), AfterValidator(check_metadata)]


class ScoreBody(Strict):
    leaderboard_id: Slug
    player_id: PlayerId
    score: Exact
    display_name: Label | None = None
    metadata: Metadata | None = None
    submission_id: SubmissionId | None = None


@dataclass(frozen=True)
class Submission:
    leaderboard_id: str
    player_id: str
    score: int
    display_name: str | None = None
    metadata: dict[str, Any] | None = None
    submission_id: str | None = None
    action: str | None = None  # a player's own action (kept in player_activity)
    # The span context of the request or message that sent it (taken where it is made): its event's
    # traceparent. Not part of what the submission is (`fingerprint`).
    traceparent: str | None = field(default_factory=current_traceparent, compare=False)

    def fingerprint(self) -> str:
        """What makes two submissions under one submission id the same submission."""
        canonical = json.dumps([self.leaderboard_id, self.player_id, self.score, self.display_name,
                                self.metadata, self.action], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Authority:
    """Who writes: a board's owner (or one of their API keys), a player reporting their own action on
    a board that allows it, or the anonymous clients of seed 000, on `boards` only."""

    owner_id: uuid.UUID | None = None
    self_report: bool = False
    boards: frozenset[str] | None = None

    def check(self, board: Any, submission: Submission) -> None:
        if self.boards is not None and board.id not in self.boards:
            raise Forbidden("forbidden", "this client may only write to " + ", ".join(sorted(self.boards)))
        if self.self_report:
            if board.self_report_max is None:
                raise Forbidden("self_report_not_allowed", "players may not report scores on this board")
            if not 0 <= submission.score <= board.self_report_max:
                raise Unprocessable("invalid_score", f"an action adds 0 to {board.self_report_max} points")
        elif self.owner_id is not None and board.owner_id != self.owner_id:
            raise Forbidden("not_owner", "only the board's owner (or its API keys) can write scores to it")


@dataclass(frozen=True)
class ScoreResult:
    leaderboard_id: str
    period: str
    player_id: str
    outcome: str  # "changed" or "unchanged"
    score: int
    previous_score: int | None
    version: int | None = None  # the entry's version once changed: the board shows it from then on
    replayed: bool = False  # a retry: the original result of this submission id

    def view(self) -> dict[str, Any]:
        return {"leaderboard_id": self.leaderboard_id, "period": self.period, "player_id": self.player_id,
                "outcome": self.outcome, "score": self.score, "previous_score": self.previous_score}


@dataclass(frozen=True)
class ScoreRequest:
    """The submissions of one request (all in one transaction), who sends them and from where."""

    submissions: tuple[Submission, ...]
    authority: Authority
    source: str = "http"  # for score_writes_total: http, batch, self_report, kafka...
