"""A quiz session's board as the worker and the operator commands drive it (app/core/projection.py): its
events applied by the session board's scripts (apply.py), rebuilt from PostgreSQL (rebuild.py), compared
with it (verify.py)."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from app.core.events import Envelope
from app.core.lua import Call, Script
from app.core.projection import Projection
from app.quiz.board.apply import forget_session, session_event_call
from app.quiz.board.keys import SessionKeys
from app.quiz.board.rebuild import Rebuilt, rebuild_session_board
from app.quiz.board.scripts import session_board_scripts
from app.quiz.board.verify import Difference, compare_session_board
from app.quiz.events import SESSION_EVENTS, SessionDeleted


class SessionBoardProjection(Projection):
    events = SESSION_EVENTS
    deletion = SessionDeleted
    unknown_reason = "unknown_session: not in PostgreSQL"

    def __init__(self, redis, engine: Engine) -> None:
        self.redis, self.engine = redis, engine
        self.scripts = session_board_scripts(redis)

    @property
    def batch(self) -> Script:
        return self.scripts.apply_batch

    def slot_key(self, aggregate_id: str) -> str:
        return SessionKeys.of(aggregate_id).board

    def calls(self, aggregate_id: str, events: list[tuple[Envelope, Any]]) -> list[Call | None]:
        keys = SessionKeys.of(aggregate_id).apply_keys  # every event of a session has the same KEYS
        return [None if self.is_deletion(payload) else session_event_call(envelope, payload, keys)
                for envelope, payload in events]

    def forget(self, client, aggregate_id: str) -> None:
        forget_session(client, aggregate_id)

    def rebuild_target(self, envelope: Envelope, payload: Any) -> tuple[str, ...]:
        return (envelope.aggregate_id,)

    def rebuild(self, target: tuple[str, ...]) -> Rebuilt:
        return rebuild_session_board(self.engine, self.redis, target[0])

    def verify(self, target: tuple[str, ...]) -> list[Difference] | None:
        return compare_session_board(self.engine, self.redis, target[0])
