"""Helpers of the leaderboard service's tests (no tests here): owners and boards made through the HTTP
API, and a board's events applied to Redis the way the worker applies them (in-process, in order)."""
from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import text

from app.core.events import envelope_from_row
from cache_worker.process import projections
from cache_worker.worker import CacheWorker, _Pending
from tests.events import EVENTS
from tests.helpers import Api, Player


def owner(api: Api) -> Player:
    return api.host()


def board(api: Api, who: Player, **settings: Any) -> dict[str, Any]:
    body = {"id": "b" + uuid.uuid4().hex[:12], "name": "Board", "sort_order": "desc", "update_mode": "best",
            "reset_period": "never", **settings}
    return api.post("/api/v1/leaderboards", body, token=who.token, expect=201).get_json()


def score(api: Api, who: Player, board_id: str, player_id: str, value: int, expect: int | None = 201,
          **extra):
    return api.post("/api/v1/scores",
                    {"leaderboard_id": board_id, "player_id": player_id, "score": value, **extra},
                    token=who.token, expect=expect)


def board_events(engine, board_id: str, since_seq: int = 0) -> list[Any]:
    with engine.connect() as connection:
        return connection.execute(text(
            "SELECT id, aggregate_type, aggregate_id, event_type, version, payload, created_at, seq "
            "FROM events WHERE aggregate_id = :b AND seq > :since ORDER BY created_at, seq"),
            {"b": board_id, "since": since_seq}).all()


class Applier:
    """Applies events with the worker's own code path (its pipeline, scripts and rebuilds), in-process."""

    def __init__(self, config, engine, redis_client):
        self.worker = CacheWorker(config, consumer=None, producer=None, redis=redis_client,
                                  projections=projections(config, redis_client, engine))
        self.engine = engine
        self.seen: dict[str, int] = {}

    def apply_rows(self, rows) -> None:
        pending = []
        for row in rows:
            envelope = envelope_from_row(row)
            pending.append(_Pending(None, envelope, EVENTS.parse(envelope)))
        if pending:
            self.worker.apply_events(pending)

    @contextmanager
    def running(self, board_id: str) -> Iterator[None]:
        """While the block runs, the board's events are applied as they are written, as the worker would."""
        stopping = threading.Event()

        def apply_until_stopped() -> None:
            while not stopping.wait(0.02):
                self.catch_up(board_id)

        thread = threading.Thread(target=apply_until_stopped, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stopping.set()
            thread.join()

    def catch_up(self, board_id: str) -> None:
        """Apply the board's events written since the last call, in order."""
        rows = board_events(self.engine, board_id, self.seen.get(board_id, 0))
        if rows:
            self.seen[board_id] = rows[-1].seq
        self.apply_rows(rows)
