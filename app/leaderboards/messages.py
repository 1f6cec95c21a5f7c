"""Score messages on Kafka (seed 001's shape): read by the score ingest, written by `ops produce-scores`,
checked again by `ops dlq redrive --queue scores`.

    {"leaderboard_id": "game1", "player_id": "Phoenix1", "score": 1500, "game_id": "match123",
     "metadata": {"level": 10}, "display_name": "Phoenix", "submission_id": "..."}

keyed by board id. The fields are the API's (`POST /scores`, the same validation); `game_id`, the match
the score comes from, is kept in the entry's metadata.
"""
from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError, model_validator

from app.core.json_input import JsonInputError, decode_json
from app.core.poison import PoisonMessage
from app.leaderboards.domain import check_metadata
from app.leaderboards.submissions import ScoreBody, Submission


class ScoreMessage(ScoreBody):
    game_id: str | None = None

    @model_validator(mode="after")
    def _metadata_fits(self) -> ScoreMessage:
        try:
            check_metadata(self.entry_metadata())
        except ValueError as exc:
            raise ValueError(f"metadata with game_id: {exc}") from None
        return self

    def entry_metadata(self) -> dict[str, Any] | None:
        """The metadata kept with the entry: the message's, with its game_id."""
        if self.game_id is None:
            return self.metadata
        return {"game_id": self.game_id, **(self.metadata or {})}

    def submission(self, derived_id: str, traceparent: str | None = None) -> Submission:
        """The submission, with `derived_id` when the message names no submission id of its own, and the
        message's `traceparent` header (for its event)."""
        return Submission(self.leaderboard_id, self.player_id, self.score, self.display_name,
                          self.entry_metadata(), self.submission_id or derived_id, traceparent=traceparent)


def decode_score(raw: bytes | None) -> ScoreMessage:
    """The score a message value carries; PoisonMessage (a ValueError), naming the reason, when it carries
    none."""
    try:
        body = decode_json(raw)
    except JsonInputError as exc:
        raise PoisonMessage(f"invalid_json: {exc}") from None
    if not isinstance(body, dict):
        raise PoisonMessage("invalid_json: the message is not a JSON object")
    try:
        return ScoreMessage.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"])[:100] or "message"
        raise PoisonMessage(f"invalid_message: {where}: {first['msg']}") from None


def encode_score(**fields: Any) -> bytes:
    return json.dumps({k: v for k, v in fields.items() if v is not None}, separators=(",", ":")).encode()


def derived_submission_id(topic: str, partition: int, offset: int) -> str:
    """The submission id of a message that names none: its place in the log, the same on every redelivery."""
    return f"kafka:{topic}:{partition}:{offset}"
