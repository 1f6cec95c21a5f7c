"""Rebuild one board period from PostgreSQL and swap it in atomically, while scores flow.

1. Read `mark = meta.recent_seq` (0 when absent): every entry the worker applies bumps it and logs the
   player in the period's `recent` stream.
2. In one REPEATABLE READ snapshot, taken after the mark, read the board's configuration, the period
   (open or closed) and its entries, removed ones included (they keep their versions).
3. Write the configuration (if it is not older than the cached one), and the entries into temporary
   keys (which expire if we die).
4. `leaderboard_swap_period.lua`: for each player changed after the mark, keep the newer of the live and the
   rebuilt entry (entries are versioned states), then RENAME the rebuilt keys in; unless another rebuild
   swapped in after the mark (meta.rebuilds moved, app/core/board.py Mark): its period already holds what
   this older snapshot has, so this one drops its keys.

An entry applied live before the mark was committed before the snapshot, so it is in it; one applied
after is merged by version. A closed period's keys get the period's expiry again.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Engine, text

from app.core.board import OVERTAKEN, REBUILD_KEY_TTL_S, SWAPPED, Mark, Swap, rebuild_until_swapped
from app.core.clock import instant_ms
from app.core.projection import UnknownAggregate
from app.leaderboards.board.keys import LeaderboardKeys
from app.leaderboards.board.scripts import leaderboard_scripts
from app.leaderboards.domain import metadata_json, ranking_sql

_CHUNK = 5000
_PIPELINE = 40  # commands sent before their replies are read


class UnknownBoard(UnknownAggregate):
    """The board or its period does not exist in PostgreSQL (or the board was deleted)."""


@dataclass(frozen=True)
class RebuiltPeriod:
    board_id: str
    period: str
    entries: int
    merged: int
    version: int


# Each entry as the worker's scripts keep it (lua/leaderboard_lib.lua): its state
# "version|tie_seq|score|reached_ms|name" in the entries hash, and its member
# "<tie_seq as 16 hex digits>:<player>" in the sorted set. PostgreSQL formats them and sends them in the
# board's order, so Redis inserts each member next to the previous one.
# The metadata (of an entry with a score) goes into the entries hash too, as the scripts keep it.
_ENTRIES = """
    SELECT player_id,
           version || '|' || tie_seq || '|' || coalesce(score::text, '') || '|'
               || floor(extract(epoch FROM reached_at) * 1000)::bigint || '|' || coalesce(display_name, ''),
           lpad(to_hex(tie_seq), 16, '0') || ':' || player_id,
           score,
           CASE WHEN score IS NOT NULL THEN metadata END
    FROM leaderboard_entries WHERE leaderboard_id = %s AND period = %s
    ORDER BY {ranking}"""
METADATA_FIELD = "\x1f"  # before a player id, the field of its entry's metadata (lua/leaderboard_lib.lua)
# The field that marks rebuilt keys as whole (lua/leaderboard_swap_period.lua): a control character, which no
# player id holds.
REBUILT_MARK = "\x1e"


def _snapshot(engine: Engine, board_id: str, period: str | None):
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as connection:
        with connection.begin():
            connection.execute(text("SET TRANSACTION READ ONLY"))
            connection.execute(text("SET LOCAL work_mem = '256MB'"))  # the board's order sorted in memory
            board = connection.execute(text("""
                SELECT b.id, b.sort_order, b.max_entries, b.revision, p.period, p.starts_at, p.closed_at,
                       (SELECT period FROM leaderboard_periods o
                        WHERE o.leaderboard_id = b.id AND o.closed_at IS NULL) AS open_period
                FROM leaderboards b JOIN leaderboard_periods p ON p.leaderboard_id = b.id
                WHERE b.id = :b AND b.deleted_at IS NULL
                  AND p.period = coalesce(:p, (SELECT period FROM leaderboard_periods o
                                              WHERE o.leaderboard_id = b.id AND o.closed_at IS NULL))"""),
                {"b": board_id, "p": period}).one_or_none()
            if board is None:
                raise UnknownBoard(f"{board_id} {period or '(current)'}")
            # The driver's cursor: a million plain tuples, without a result object per row.
            cursor = connection.connection.driver_connection.cursor()
            cursor.execute(_ENTRIES.format(ranking=ranking_sql(board.sort_order)), (board_id, board.period))
            entries = cursor.fetchall()
    return board, entries


def rebuild_period(engine: Engine, redis, board_id: str, period: str | None = None, *,
                   period_ttl_s: int = 86400, before_swap=None) -> RebuiltPeriod:
    """Rebuild `period` of the board (its open period when None) from PostgreSQL and swap it in.
    Raises UnknownBoard when PostgreSQL has no such board or period. `before_swap` is a test hook."""
    keys = LeaderboardKeys(board_id)
    scripts = leaderboard_scripts(redis)

    def attempt(token: str) -> Swap[RebuiltPeriod]:
        known_period = period or _cached_period(redis, keys)
        mark = Mark.read(redis, keys.period(known_period).meta) if known_period else Mark()
        board, entries = _snapshot(engine, board_id, period)
        if period is None and known_period != board.period:
            mark = Mark.read(redis, keys.period(board.period).meta)
            board, entries = _snapshot(engine, board_id, board.period)
        target = keys.period(board.period)
        _write_config(redis, keys, board)
        rebuilt_z, rebuilt_entries, rebuilt_meta = temporary = target.rebuilding(token)
        sign = -1 if board.sort_order == "desc" else 1
        total = 0
        pipe = redis.pipeline(transaction=False)
        pipe.hset(rebuilt_entries, REBUILT_MARK, "")
        for start in range(0, len(entries), _CHUNK):
            chunk = entries[start:start + _CHUNK]
            pipe.hset(rebuilt_entries, mapping={player: state for player, state, _, _, _ in chunk})
            shown = {METADATA_FIELD + player: metadata_json(metadata)
                     for player, _, _, _, metadata in chunk if metadata}
            shown = {field: value for field, value in shown.items() if value}
            if shown:
                pipe.hset(rebuilt_entries, mapping=shown)
            ranked = {member: sign * score for _, _, member, score, _ in chunk if score is not None}
            if ranked:
                pipe.zadd(rebuilt_z, ranked)
                total += sum(ranked.values())
            if len(pipe) >= _PIPELINE:
                pipe.execute()
        pipe.hset(rebuilt_meta, "sum", sign * total)
        for key in temporary:
            pipe.expire(key, REBUILD_KEY_TTL_S)
        pipe.execute()
        if before_swap is not None:
            before_swap()
        expire_at_s = 0
        if board.closed_at is not None:  # read after it closed: it expires again, a while from now
            expire_at_s = int(max(board.closed_at.timestamp() + period_ttl_s, time.time() + 3600))
        outcome = scripts.leaderboard_swap_period(
            [keys.cfg, target.z, target.entries, target.meta, target.recent, keys.periods, keys.room,
             rebuilt_z, rebuilt_entries, rebuilt_meta],
            [board.period, mark.recent_seq, expire_at_s, mark.rebuilds])
        if outcome[0] not in (SWAPPED, OVERTAKEN):
            return Swap(None, temporary)
        rebuilt = RebuiltPeriod(board_id, board.period, len(entries), int(outcome[2]), int(outcome[1]))
        return Swap(rebuilt, temporary)

    return rebuild_until_swapped(board_id, redis, attempt)


def _cached_period(redis, keys: LeaderboardKeys) -> str | None:
    period = redis.hget(keys.cfg, "period")
    return period.decode() if isinstance(period, bytes) else period


def _write_config(redis, keys: LeaderboardKeys, board) -> None:
    """The board's configuration from PostgreSQL, unless Redis holds a newer revision (a later event)."""
    scripts = leaderboard_scripts(redis)
    scripts.leaderboard_apply_config([keys.cfg, keys.room], [board.revision, board.sort_order,
                                                    "" if board.max_entries is None else board.max_entries])
    if board.open_period == board.period:
        scripts.leaderboard_apply_period([keys.cfg, keys.room], [board.period, instant_ms(board.starts_at)])
