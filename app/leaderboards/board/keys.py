"""Redis key names of a board; every one carries the board id as a hash tag (Redis Cluster), so each
script of a board runs in one slot. A board's configuration is one hash; each period has its own
sorted set, entries, metadata and change log (lua/leaderboard_lib.lua describes them). Every name starts with
REDIS_KEY_PREFIX (app/core/redis_keys.py)."""
from __future__ import annotations

from dataclasses import dataclass

from app.core import redis_keys


@dataclass(frozen=True)
class LeaderboardKeys:
    board_id: str

    def _name(self, kind: str) -> str:
        return f"{kind}:{{b:{self.board_id}}}"

    def _key(self, kind: str) -> str:
        return redis_keys.key(self._name(kind))

    @property
    def cfg(self) -> str:
        return self._key("lbc")

    @property
    def periods(self) -> str:
        """The periods Redis holds keys of (so a deleted board's keys can all be found)."""
        return self._key("lbp")

    @property
    def room(self) -> str:
        """The board's notification stream, read by the web processes' hubs."""
        return self._key("lbroom")

    def period(self, period: str) -> PeriodKeys:
        return PeriodKeys(self, period)


@dataclass(frozen=True)
class PeriodKeys:
    board: LeaderboardKeys
    period: str

    def _key(self, kind: str) -> str:
        return redis_keys.key(f"{self.board._name(kind)}:{self.period}")

    @property
    def z(self) -> str:
        return self._key("lbz")

    @property
    def entries(self) -> str:
        return self._key("lbe")

    @property
    def meta(self) -> str:
        return self._key("lbm")

    @property
    def recent(self) -> str:
        return self._key("lbr")

    @property
    def read_keys(self) -> list[str]:
        """The KEYS of every read script, in the order they assert."""
        return [self.board.cfg, self.z, self.entries, self.meta]

    @property
    def apply_keys(self) -> list[str]:
        return [self.board.cfg, self.z, self.entries, self.meta, self.recent, self.board.room]

    @property
    def all(self) -> list[str]:
        return [self.z, self.entries, self.meta, self.recent]

    def rebuilding(self, token: str) -> tuple[str, str, str]:
        """Temporary set, entries and metadata of one rebuild, in the board's slot."""
        return f"{self.z}:rebuild:{token}", f"{self.entries}:rebuild:{token}", f"{self.meta}:rebuild:{token}"
