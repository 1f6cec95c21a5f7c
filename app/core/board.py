"""What both boards in Redis share (a quiz session's, app/quiz/board/; a leaderboard's,
app/leaderboards/board/): a rebuild from PostgreSQL written into temporary keys and swapped in atomically,
a read that finds its board missing, and finding the boards Redis holds."""
from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from app.core import redis_keys

# A rebuild whose swap was refused (its snapshot no longer fits what Redis holds) starts over, this many
# times at most.
REBUILD_ATTEMPTS = 5
# The temporary keys of a rebuild expire if the process that writes them dies before its swap.
REBUILD_KEY_TTL_S = 600
# A read that finds its board missing rebuilds it and reads again, this many times at most.
READ_ATTEMPTS = 3
# What a rebuild's swap script answers first: swapped in, or overtaken by another rebuild's swap (see Mark).
SWAPPED, OVERTAKEN = 1, 0

T = TypeVar("T")


@dataclass(frozen=True)
class Mark:
    """Where a board stood when a rebuild began, read from its `meta` hash before the snapshot: the
    sequence of its `recent` log (what was applied after it is replayed or merged at the swap) and how
    many rebuilds had swapped in (a swap that finds this moved was overtaken by another rebuild's, whose
    board already holds all this one's older snapshot has: it drops its keys and swaps nothing)."""

    recent_seq: int = 0
    rebuilds: int = 0

    @classmethod
    def read(cls, redis, meta: str) -> Mark:
        recent_seq, rebuilds = redis.hmget(meta, "recent_seq", "rebuilds")
        return cls(int(recent_seq or 0), int(rebuilds or 0))


@dataclass(frozen=True)
class Swap(Generic[T]):
    """One attempt of a rebuild: what its swap answered (None: refused), and its temporary keys."""

    rebuilt: T | None
    temporary: Sequence[str]


def rebuild_until_swapped(name: str, redis, attempt: Callable[[str], Swap[T]]) -> T:
    """Run `attempt(token)` (snapshot PostgreSQL, write the temporary keys named by `token`, swap them in)
    until its swap is taken; a refused attempt's temporary keys are deleted. RuntimeError after
    REBUILD_ATTEMPTS refusals."""
    for _ in range(REBUILD_ATTEMPTS):
        swap = attempt(uuid.uuid4().hex)
        if swap.rebuilt is not None:
            return swap.rebuilt
        redis.delete(*swap.temporary)
    raise RuntimeError(f"rebuild of {name} did not settle after {REBUILD_ATTEMPTS} attempts")


def cached_ids(redis, patterns: Iterable[str], key: re.Pattern[str]) -> set[str]:
    """The ids of the boards Redis holds a key of, by SCAN (so it never blocks Redis) over `patterns`
    among this process's REDIS_KEY_PREFIX only; `key` matches an unprefixed key and captures its id
    (a rebuild's temporary keys do not match)."""
    found: set[str] = set()
    for pattern in patterns:
        for name in redis.scan_iter(match=redis_keys.pattern(pattern), count=1000):
            match = key.match(redis_keys.unprefixed(name))
            if match:
                found.add(match.group(1))
    return found
