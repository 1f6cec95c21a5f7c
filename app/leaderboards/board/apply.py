"""Turning one board event into the call of the Lua script that applies it to Redis (alone, or in the
worker's batch of the board's events, lua/apply_batch.lua, which runs the same rule per event).

Board events carry resulting states with a version (entries), a revision (configuration) or a start
(periods), so each script keeps the newer of what it holds and what it is given: redeliveries, replays
and any reordering leave Redis unchanged, and no dedupe set grows without end.
"""
from __future__ import annotations

from datetime import timedelta

from app.core.clock import instant_ms
from app.core.events import Envelope
from app.core.lua import Call
from app.leaderboards.board.keys import LeaderboardKeys
from app.leaderboards.domain import metadata_json
from app.leaderboards.events import (
    BoardConfigured,
    EntryChanged,
    EntryRemoved,
    PeriodClosed,
    PeriodOpened,
)

ROOM_MAXLEN = 1000  # as lua/common_lib.lua bounds the streams
ROOM_TTL_S = 86400


def leaderboard_event_call(envelope: Envelope, payload, period_ttl: timedelta) -> Call:
    """The script call that applies a board event (its one-event script, KEYS and ARGV), which the worker
    runs among the board's others in one batch (app/core/lua.py). A deleted board is removed by
    `forget_board`, not by a script."""
    keys = LeaderboardKeys(envelope.aggregate_id)
    if isinstance(payload, EntryChanged):
        return Call("leaderboard_apply_entry", keys.period(payload.period).apply_keys, [
            payload.player_id, payload.version, payload.tie_seq, payload.score,
            instant_ms(payload.reached_at), payload.display_name or "", payload.period,
            metadata_json(payload.metadata)])
    if isinstance(payload, EntryRemoved):
        return Call("leaderboard_apply_entry", keys.period(payload.period).apply_keys, [
            payload.player_id, payload.version, 0, "", 0, "", payload.period, ""])
    if isinstance(payload, BoardConfigured):
        return Call("leaderboard_apply_config", [keys.cfg, keys.room], [
            payload.revision, payload.sort_order, "" if payload.max_entries is None else payload.max_entries])
    if isinstance(payload, PeriodOpened):
        return Call("leaderboard_apply_period", [keys.cfg, keys.room],
                    [payload.period, instant_ms(payload.starts_at)])
    if isinstance(payload, PeriodClosed):
        period = keys.period(payload.period)
        expire_at_s = instant_ms(payload.closed_at + period_ttl) // 1000
        return Call("leaderboard_close_period", [*period.all, keys.room], [payload.period, expire_at_s,
                                                                   payload.model_dump_json()])
    raise TypeError(f"no script applies {envelope.event_type}")


def forget_board(redis, board_id: str) -> int:
    """Remove every key of a deleted board (its periods are listed in one set); returns how many."""
    keys = LeaderboardKeys(board_id)
    periods = [p.decode() if isinstance(p, bytes) else p for p in redis.smembers(keys.periods)]
    names = [keys.cfg, keys.periods] + [name for period in periods for name in keys.period(period).all]
    removed = redis.delete(*names)
    # Sockets watching it hear that it is gone; the stream itself goes a day later.
    redis.xadd(keys.room, {"type": "board_deleted"}, maxlen=ROOM_MAXLEN, approximate=True)
    redis.expire(keys.room, ROOM_TTL_S)
    return removed
