"""What the worker does with each kind of aggregate: which script call applies an event, which key names
its Redis Cluster slot, and how a board Redis lacks is rebuilt from PostgreSQL. Quiz sessions and
leaderboards share the loop (cache_worker/worker.py); only these answers differ.

An aggregate's events of one batch are applied together (`Aggregate.queue`): runs of them go to Redis as
apply_batch calls of at most BATCH_CHUNK events (app/core/lua.py), which answer one reply per event, and a
deletion, which no script applies, splits the runs and is finished once the pipeline ran (`settle`)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

from app.core.events import Envelope, EventCatalog
from app.core.lua import APPLIED, BATCH_CHUNK, Call, Script, pack_batch
from app.leaderboards.board.apply import forget_board, is_board_deletion, leaderboard_event_call
from app.leaderboards.board.keys import LeaderboardKeys
from app.leaderboards.board.rebuild import UnknownBoard, rebuild_period
from app.leaderboards.board.scripts import leaderboard_scripts
from app.leaderboards.events import LEADERBOARD, LEADERBOARD_EVENTS
from app.quiz.board.apply import forget_session, is_session_deletion, session_event_call
from app.quiz.board.keys import SessionKeys
from app.quiz.board.rebuild import UnknownSession, rebuild_session_board
from app.quiz.board.scripts import session_board_scripts
from app.quiz.events import QUIZ_SESSION, SESSION_EVENTS

# The events the worker reads: a session's and a board's.
EVENT_TYPES = EventCatalog(SESSION_EVENTS, LEADERBOARD_EVENTS)

# What `Aggregate.queue` returns for a deletion: no command of the pipeline answers it (see `settle`).
NO_COMMAND = 0


@dataclass(frozen=True)
class Aggregate:
    slot_key: Callable[[str], str]
    # The script calls applying one aggregate's events (aggregate id, [(envelope, payload)] in order);
    # None for a deletion, which `settle` does.
    calls: Callable[[str, list[tuple[Envelope, Any]]], list[Call | None]]
    # lua/apply_batch.lua over the aggregate's library: many of its events in one call.
    batch: Script
    # What to rebuild when the script answers NEEDS_REBUILD, and how (raises `unknown` if PostgreSQL has none).
    rebuild_target: Callable[[Envelope, Any], tuple]
    rebuild: Callable[[Any, Any, tuple], Any]
    unknown: type[Exception]
    unknown_reason: str
    # Work to finish once the pipeline ran (a deleted aggregate's keys), given the event's reply.
    settle: Callable[[Any, Envelope, Any, Any], Any] = lambda redis, envelope, payload, reply: reply

    def queue(self, pipe, aggregate_id: str, events: list[tuple[Envelope, Any]]) -> list[int]:
        """Queue on `pipe` what applies `events` (this aggregate's, in order): apply_batch calls of at most
        BATCH_CHUNK events, nothing for a deletion. Returns, per step in order, how many events the next
        reply of the pipeline answers for (a list of one reply each), or NO_COMMAND for a deletion."""
        steps: list[int] = []
        run: list[Call] = []

        def send_run() -> None:
            for start in range(0, len(run), BATCH_CHUNK):
                chunk = run[start:start + BATCH_CHUNK]
                keys, args = pack_batch(chunk)
                self.batch(keys, args, client=pipe)
                steps.append(len(chunk))
            run.clear()

        for call in self.calls(aggregate_id, events):
            if call is None:
                send_run()
                steps.append(NO_COMMAND)
            else:
                run.append(call)
        send_run()
        return steps


def aggregates(redis, *, period_ttl_s: int) -> dict[str, Aggregate]:
    session_scripts, boards = session_board_scripts(redis), leaderboard_scripts(redis)
    period_ttl = timedelta(seconds=period_ttl_s)

    def session_calls(session_id: str, events) -> list[Call | None]:
        keys = SessionKeys.of(session_id).apply_keys  # every event of a session has the same KEYS
        return [None if is_session_deletion(payload) else session_event_call(envelope, payload, keys)
                for envelope, payload in events]

    def settle_session(client, envelope, payload, reply):
        if is_session_deletion(payload):
            forget_session(client, envelope.aggregate_id)
            return APPLIED
        return reply

    def board_calls(board_id: str, events) -> list[Call | None]:
        return [None if is_board_deletion(payload)
                else leaderboard_event_call(envelope, payload, period_ttl=period_ttl) for envelope, payload in events]

    def settle_board(client, envelope, payload, reply):
        if is_board_deletion(payload):
            forget_board(client, envelope.aggregate_id)
            return APPLIED
        return reply

    return {
        QUIZ_SESSION: Aggregate(
            slot_key=lambda aggregate_id: SessionKeys.of(aggregate_id).board,
            calls=session_calls, batch=session_scripts.apply_batch,
            rebuild_target=lambda envelope, payload: (envelope.aggregate_id,),
            rebuild=lambda engine, client, target: rebuild_session_board(engine, client, target[0]),
            unknown=UnknownSession, unknown_reason="unknown_session: not in PostgreSQL",
            settle=settle_session),
        LEADERBOARD: Aggregate(
            slot_key=lambda aggregate_id: LeaderboardKeys(aggregate_id).cfg,
            calls=board_calls, batch=boards.apply_batch,
            rebuild_target=lambda envelope, payload: (envelope.aggregate_id, payload.period),
            rebuild=lambda engine, client, target: rebuild_period(engine, client, target[0], target[1],
                                                                  period_ttl_s=period_ttl_s),
            unknown=UnknownBoard, unknown_reason="unknown_board: not in PostgreSQL",
            settle=settle_board),
    }
