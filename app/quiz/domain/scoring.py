"""Kahoot's published scoring rule, with its streak bonus."""
from __future__ import annotations

import math
from dataclasses import dataclass

FULL_POINTS_WITHIN_MS = 500
STREAK_STEP = 100
STREAK_CAP = 500


@dataclass(frozen=True)
class Scored:
    correct: bool
    points: int  # base points plus streak bonus
    streak: int  # the streak after this answer


def base_points(points: int, answered_ms: int, time_limit_s: int) -> int:
    """`floor(P × (1 − (t / T) / 2) + 0.5)`, the full P within the first half second."""
    if answered_ms < FULL_POINTS_WITHIN_MS:
        return points
    fraction = min(answered_ms / (time_limit_s * 1000), 1.0)
    return math.floor(points * (1 - fraction / 2) + 0.5)


def streak_bonus(streak: int) -> int:
    """The k-th correct answer in a row (k ≥ 2) adds min(100 × (k − 1), 500)."""
    return min(STREAK_STEP * (streak - 1), STREAK_CAP) if streak >= 2 else 0


def score_answer(*, correct: bool, points: int, answered_ms: int, time_limit_s: int, streak_before: int) -> Scored:
    if points == 0:
        # A question worth nothing neither scores nor touches the streak.
        return Scored(correct=correct, points=0, streak=streak_before)
    if not correct:
        return Scored(correct=False, points=0, streak=0)
    streak = streak_before + 1
    return Scored(correct=True, points=base_points(points, answered_ms, time_limit_s) + streak_bonus(streak),
                  streak=streak)
