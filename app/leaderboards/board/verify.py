"""Comparing a board period in Redis with PostgreSQL, the truth (`ops verify --board`): every player's
score and tie position (which orders equal scores), and the sorted set against the entries it indexes."""
from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import text

from app.core.board import cached_ids
from app.leaderboards.board.keys import LeaderboardKeys

Standing = tuple[int, int]  # score, tie_seq
_CFG_KEY = re.compile(r"^lbc:\{b:([A-Za-z0-9_.-]+)\}$")


@dataclass(frozen=True)
class BoardDifference:
    board_id: str
    period: str
    player_id: str
    redis: Standing | None
    postgres: Standing | None

    def line(self) -> str:
        def shown(standing: Standing | None) -> str:
            return "missing" if standing is None else str(standing[0])

        text_ = (f"differs  board={self.board_id} period={self.period} player={self.player_id} "
                 f"redis={shown(self.redis)} postgres={shown(self.postgres)}")
        if self.redis and self.postgres and self.redis[0] == self.postgres[0]:
            text_ += f" tie-break: tie_seq redis={self.redis[1]} postgres={self.postgres[1]}"
        return text_


@dataclass(frozen=True)
class StrayMember:
    """A member of a period's sorted set that is not `<tie_seq as 16 hex digits>:<player id>`: no write
    of the service makes one, so something else wrote to the board."""
    board_id: str
    period: str
    member: str

    def line(self) -> str:
        return (f"differs  board={self.board_id} period={self.period} member={self.member!r} redis=malformed "
                f"(not <16 hex digits>:<player id>)")


def cached_boards(redis) -> set[str]:
    """Boards with a configuration in Redis (SCAN, so it never blocks Redis), among the keys of this
    process's REDIS_KEY_PREFIX only."""
    return cached_ids(redis, ["lbc:{b:*}"], _CFG_KEY)


def cached_periods(redis, board_id: str) -> list[str]:
    keys = LeaderboardKeys(board_id)
    return sorted(p.decode() if isinstance(p, bytes) else p for p in redis.smembers(keys.periods)
                  if redis.exists(keys.period(p.decode() if isinstance(p, bytes) else p).meta))


_MEMBER = re.compile(r"^([0-9a-f]{16}):(.+)$", re.DOTALL)


def _redis_standings(redis, board_id: str, period: str) -> tuple[bool, dict[str, Standing], list[str]]:
    """(whether Redis holds the period, {player: standing}, the members not in the service's format)."""
    keys = LeaderboardKeys(board_id).period(period)
    pipe = redis.pipeline(transaction=True)
    pipe.exists(keys.meta)
    pipe.hget(keys.board.cfg, "sort_order")
    pipe.zrange(keys.z, 0, -1, withscores=True)
    cached, order, ranked = pipe.execute()
    sign = -1 if (order or b"").decode() == "desc" else 1
    standings, stray = {}, []
    for member, zscore in ranked:
        member = member.decode(errors="backslashreplace")
        match = _MEMBER.match(member)
        if match is None:
            stray.append(member)
        else:
            standings[match.group(2)] = (sign * int(zscore), int(match.group(1), 16))
    return bool(cached), standings, stray


def compare_period(engine, redis, board_id: str,
                   period: str) -> list[BoardDifference | StrayMember] | None:
    """Differences between Redis and PostgreSQL for one period; None when Redis does not hold it. Redis is
    read first: an entry applied there was committed first, so a race only ever shows PostgreSQL ahead."""
    cached, held, stray = _redis_standings(redis, board_id, period)
    if not cached:
        return None
    with engine.connect() as connection:
        truth = {r.player_id: (r.score, r.tie_seq) for r in connection.execute(text(
            "SELECT player_id, score, tie_seq FROM leaderboard_entries "
            "WHERE leaderboard_id = :b AND period = :p AND score IS NOT NULL"), {"b": board_id, "p": period})}
    return [StrayMember(board_id, period, member) for member in stray] + [
        BoardDifference(board_id, period, player, held.get(player), truth.get(player))
        for player in sorted(set(held) | set(truth)) if held.get(player) != truth.get(player)]
