"""The composite sorted-set score: exact integer points, ties broken by who reached them first.

    composite = score * 2^34 + (2^34 - 1 - reached_ms)

reached_ms counts milliseconds from the session's epoch (its `created_at`, whole ms) to the moment
the player reached the score: the `answered_at` of their latest answer that earned points, or
`joined_at` before that. It is clamped to [0, 2^34 - 1] (about 199 days; later ties fall back to
member order). Scores are below 2^19 = 524,288 (100 questions of 2,000 points plus a 500 streak
bonus is 250,000), so every composite is below 2^53 and stored exactly by Redis' doubles.

Equal composites (the same score reached in the same millisecond) are ordered as ZREVRANGE orders
equal scores: the member, the participant id, in reverse. `RANK_ORDER_SQL` is that whole order for
the reads that rank in PostgreSQL, so a reload's rank is the rank the board and a close show.

The same arithmetic lives in lua/session_board_lib.lua; the worker passes absolute millisecond instants
and the scripts subtract the epoch stored in `meta:{S}`, so the worker and the rebuild cannot
disagree on it.
"""
from __future__ import annotations

TIE_SPAN = 2 ** 34
MAX_REACHED_MS = TIE_SPAN - 1
MAX_SCORE = 2 ** 19 - 1


# ORDER BY of quiz_session_participants `p` joined to their quiz_sessions `s`: the board's order.
# extract(epoch) is exact (numeric) on PostgreSQL 14+, so the floor is instant_ms's.
RANK_ORDER_SQL = (
    "p.score DESC, "
    "LEAST(GREATEST(floor(extract(epoch FROM p.score_reached_at) * 1000) - "
    f"floor(extract(epoch FROM s.created_at) * 1000), 0), {MAX_REACHED_MS}), "
    "p.id DESC")


def reached_ms(epoch_ms: int, at_ms: int) -> int:
    return min(max(at_ms - epoch_ms, 0), MAX_REACHED_MS)


def composite(score: int, reached: int) -> int:
    if not 0 <= score <= MAX_SCORE:
        raise ValueError(f"score {score} is outside 0..{MAX_SCORE}")
    if not 0 <= reached <= MAX_REACHED_MS:
        raise ValueError(f"reached_ms {reached} is outside 0..{MAX_REACHED_MS}")
    return score * TIE_SPAN + (MAX_REACHED_MS - reached)


def split(value: int | float) -> tuple[int, int]:
    """(score, reached_ms) of a composite."""
    value = int(value)
    score = value // TIE_SPAN
    return score, MAX_REACHED_MS - (value - score * TIE_SPAN)
