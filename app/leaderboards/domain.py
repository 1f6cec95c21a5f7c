"""The rules of a leaderboard, without I/O: what its settings may be, and what a score does to an entry.

The write path (app/leaderboards/service/score_write.py) locks the entries a write names, then runs
`EntryFold` over each entry's submissions in order: however many submissions name one entry, it is
written once, with the state applying them one at a time would leave. The mode rule runs here, in
Python, on every path; the board's order runs in SQL too (`ranking_sql`, beside its twin), and
tests/integration/test_leaderboard_order.py holds PostgreSQL, Redis and the rule to each other.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

MAX_EXACT = 2 ** 53 - 1  # Redis scores are doubles: integers beyond this are not exact
SORT_ORDERS = ("asc", "desc")
UPDATE_MODES = ("replace", "increment", "best")
RESET_PERIODS = ("never", "hourly", "daily", "weekly", "monthly")
DEFAULT_BOARD = "default"  # system-owned: desc, best, never reset; it cannot be deleted
BOARD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


# Metadata (a score's, or a board's) is kept as given and returned with every read of its entry: at most
# this many bytes of compact UTF-8 JSON, so a page of 100 entries carries at most 100 KiB of it.
METADATA_MAX_BYTES = 1024


def is_exact(score: int) -> bool:
    return -MAX_EXACT <= score <= MAX_EXACT


def metadata_json(metadata: dict[str, Any] | None) -> str:
    """Metadata as Redis keeps it and reads return it: compact JSON, or '' for none. Metadata stored
    before METADATA_MAX_BYTES bounded writes, and beyond it, is not shown (''): no read outgrows the bound."""
    if not metadata:
        return ""
    encoded = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False)
    return encoded if len(encoded.encode()) <= METADATA_MAX_BYTES else ""


def check_metadata(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    """`metadata` if it fits METADATA_MAX_BYTES (ValueError otherwise): the bound of every write path."""
    if metadata and not metadata_json(metadata):
        raise ValueError(f"at most {METADATA_MAX_BYTES} bytes of JSON")
    return metadata


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


@dataclass(frozen=True)
class Step:
    """What one submission did to its entry: its score after, the score before, and the entry's version
    once changed (None: unchanged)."""

    changed: bool
    score: int
    previous_score: int | None
    version: int | None


@dataclass
class EntryFold:
    """One entry's submissions applied in order, from the state the write found it in (score None: no
    score yet, or removed). What the entry is written with: the last score, the score before the last
    change, one version per change, the tie position of the last change (the index `last_change`), and
    the last display name and metadata a change brought (None: the entry keeps its own)."""

    mode: str
    sort_order: str
    score: int | None
    version: int
    previous_score: int | None = None
    last_change: int | None = None
    display_name: str | None = None
    metadata: Any = None

    def apply(self, index: int, submitted: int, display_name: str | None = None,
              metadata: Any = None) -> Step | None:
        """Apply the submission at `index` of the write; None when it would leave the exact range (it
        then changes nothing, as if it had not been sent)."""
        changed, new = apply_score(self.mode, self.sort_order, self.score, submitted)
        if not changed:
            return Step(False, self.score, self.score, None)  # type: ignore[arg-type] - a score is held
        if not is_exact(new):  # type: ignore[arg-type]
            return None
        self.previous_score, self.score = self.score, new
        self.version += 1
        self.last_change = index
        self.display_name = display_name if display_name is not None else self.display_name
        self.metadata = metadata if metadata is not None else self.metadata
        return Step(True, new, self.previous_score, self.version)  # type: ignore[arg-type]

    @property
    def changed(self) -> bool:
        return self.last_change is not None
