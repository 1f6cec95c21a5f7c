"""The rules of a leaderboard, without I/O: what its settings may be, and what a score does to an entry.

The write path decides in SQL (app/leaderboards/scores.py); `apply_score` states the same rule in
Python, for the property tests and anyone reading it.
"""
from __future__ import annotations

import re

MAX_EXACT = 2 ** 53 - 1  # Redis scores are doubles: integers beyond this are not exact
SORT_ORDERS = ("asc", "desc")
UPDATE_MODES = ("replace", "increment", "best")
RESET_PERIODS = ("never", "hourly", "daily", "weekly", "monthly")
DEFAULT_BOARD = "default"  # system-owned: desc, best, never reset; it cannot be deleted
BOARD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def is_exact(score: int) -> bool:
    return -MAX_EXACT <= score <= MAX_EXACT


def apply_score(mode: str, sort_order: str, current: int | None, submitted: int) -> tuple[bool, int | None]:
    """(changed, new score) of an entry holding `current` (None: no score yet) given `submitted`.

    best keeps the better score (higher for desc, lower for asc), and never a score that was not
    submitted; replace takes any different score; increment adds (a zero adds nothing)."""
    if mode == "increment":
        if current is None:
            return True, submitted
        return submitted != 0, current + submitted
    if current is None:
        return True, submitted
    if mode == "replace":
        return submitted != current, submitted
    better = submitted > current if sort_order == "desc" else submitted < current
    return better, submitted if better else current


def ranking_sql(sort_order: str) -> str:
    """ORDER BY of a board's ranking: score in the board's direction, then who reached it first."""
    if sort_order not in SORT_ORDERS:
        raise ValueError(sort_order)
    return f"score {sort_order.upper()}, tie_seq"
