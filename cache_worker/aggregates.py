"""What the worker does with each kind of aggregate: which script applies an event, which key names
its Redis Cluster slot, and how a board Redis lacks is rebuilt from PostgreSQL. Quiz sessions and
leaderboards share the loop (cache_worker/worker.py); only these answers differ."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

from app.events import LEADERBOARD, QUIZ_SESSION, Envelope
from app.leaderboards.apply import apply_board_event, forget_board, is_board_deletion
from app.leaderboards.keys import BoardKeys
from app.leaderboards.rebuild import UnknownBoard, rebuild_period
from app.leaderboards.scripts import board_scripts
from app.lua import APPLIED
from app.session_boards.apply import apply_event, forget_session, is_session_deletion
from app.session_boards.keys import SessionKeys
from app.session_boards.rebuild import UnknownSession, rebuild_board
from app.session_boards.scripts import scripts_for


@dataclass(frozen=True)
class Aggregate:
    slot_key: Callable[[str], str]
    # Queue the event's script on a pipeline (its reply is APPLIED, DUPLICATE or NEEDS_REBUILD).
    queue: Callable[[Any, Envelope, Any], None]
    # What to rebuild when the script answers NEEDS_REBUILD, and how (raises `unknown` if PostgreSQL has none).
    rebuild_target: Callable[[Envelope, Any], tuple]
    rebuild: Callable[[Any, Any, tuple], Any]
    unknown: type[Exception]
    unknown_reason: str
    # Work to finish once the pipeline ran (a deleted board's keys), given the script's reply.
    settle: Callable[[Any, Envelope, Any, Any], Any] = lambda redis, envelope, payload, reply: reply


def aggregates(redis, *, period_ttl_s: int) -> dict[str, Aggregate]:
    session_scripts, boards = scripts_for(redis), board_scripts(redis)
    period_ttl = timedelta(seconds=period_ttl_s)

    def queue_session(pipe, envelope, payload) -> None:
        if is_session_deletion(payload):
            pipe.exists(SessionKeys.of(envelope.aggregate_id).meta)  # the keys go in `settle`
        else:
            apply_event(session_scripts, pipe, envelope, payload)

    def settle_session(client, envelope, payload, reply):
        if is_session_deletion(payload):
            forget_session(client, envelope.aggregate_id)
            return APPLIED
        return reply

    def queue_board(pipe, envelope, payload) -> None:
        if is_board_deletion(payload):
            pipe.exists(BoardKeys(envelope.aggregate_id).cfg)  # the keys go in `settle`
        else:
            apply_board_event(boards, pipe, envelope, payload, period_ttl=period_ttl)

    def settle_board(client, envelope, payload, reply):
        if is_board_deletion(payload):
            forget_board(client, envelope.aggregate_id)
            return APPLIED
        return reply

    return {
        QUIZ_SESSION: Aggregate(
            slot_key=lambda aggregate_id: SessionKeys.of(aggregate_id).board,
            queue=queue_session,
            rebuild_target=lambda envelope, payload: (envelope.aggregate_id,),
            rebuild=lambda engine, client, target: rebuild_board(engine, client, target[0]),
            unknown=UnknownSession, unknown_reason="unknown_session: not in PostgreSQL",
            settle=settle_session),
        LEADERBOARD: Aggregate(
            slot_key=lambda aggregate_id: BoardKeys(aggregate_id).cfg,
            queue=queue_board,
            rebuild_target=lambda envelope, payload: (envelope.aggregate_id, payload.period),
            rebuild=lambda engine, client, target: rebuild_period(engine, client, target[0], target[1],
                                                                  period_ttl_s=period_ttl_s),
            unknown=UnknownBoard, unknown_reason="unknown_board: not in PostgreSQL",
            settle=settle_board),
    }
