"""A leaderboard as the worker and the operator commands drive it (app/core/projection.py): its events
applied by the leaderboard's scripts (apply.py), a period rebuilt from PostgreSQL (rebuild.py) or
compared with it (verify.py), and the change feed of the tops a batch moved (changes.py)."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Engine

from app.core.config import Config
from app.core.events import Envelope
from app.core.lua import Call, Script
from app.core.projection import Announcement, Projection
from app.core.redis_client import node_client
from app.leaderboards.board.apply import forget_board, leaderboard_event_call
from app.leaderboards.board.changes import announce_changes, announce_closes, touched_periods
from app.leaderboards.board.keys import LeaderboardKeys
from app.leaderboards.board.rebuild import RebuiltPeriod, rebuild_period
from app.leaderboards.board.scripts import leaderboard_scripts
from app.leaderboards.board.verify import BoardDifference, StrayMember, compare_period
from app.leaderboards.events import LEADERBOARD_EVENTS, BoardDeleted
from app.leaderboards.spans import PeriodSpans


class LeaderboardProjection(Projection):
    events = LEADERBOARD_EVENTS
    deletion = BoardDeleted
    unknown_reason = "unknown_board: not in PostgreSQL"

    def __init__(self, redis, engine: Engine, config: Config) -> None:
        self.redis, self.engine = redis, engine
        self.scripts = leaderboard_scripts(redis)
        self.period_ttl_s = config.leaderboard_period_ttl_s
        self.change_topic, self.change_top = config.change_topic, config.change_top
        self.spans = PeriodSpans(engine)  # the change feed's periods, shown as every read shows them

    @property
    def batch(self) -> Script:
        return self.scripts.apply_batch

    def slot_key(self, aggregate_id: str) -> str:
        return LeaderboardKeys(aggregate_id).cfg

    def calls(self, aggregate_id: str, events: list[tuple[Envelope, Any]]) -> list[Call | None]:
        ttl = timedelta(seconds=self.period_ttl_s)
        return [None if self.is_deletion(payload) else leaderboard_event_call(envelope, payload, ttl)
                for envelope, payload in events]

    def forget(self, client, aggregate_id: str) -> None:
        forget_board(client, aggregate_id)

    def rebuild_target(self, envelope: Envelope, payload: Any) -> tuple[str, ...]:
        return (envelope.aggregate_id, payload.period)

    def rebuild(self, target: tuple[str, ...]) -> RebuiltPeriod:
        return rebuild_period(self.engine, self.redis, target[0], target[1], period_ttl_s=self.period_ttl_s)

    def verify(self, target: tuple[str, ...]) -> list[BoardDifference | StrayMember] | None:
        return compare_period(self.engine, self.redis, target[0], target[1])

    def announce(self, events: list[tuple[Envelope, Any]], producer) -> list[Announcement]:
        """The change feed: the new top of each period the batch touched, and the final standings of each
        period it closed."""
        announced = announce_changes(touched_periods(events), producer=producer, topic=self.change_topic,
                                     top=self.change_top, spans=self.spans,
                                     client_for=lambda key: node_client(self.redis, key))
        announce_closes(events, producer=producer, topic=self.change_topic)
        return list(announced)
