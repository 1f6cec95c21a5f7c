"""Kahoot's published scoring rule, with its streak bonus; and what a question's close does to each
player's standing (`after_close`), a rule that runs in SQL over the whole room at once (CLOSE_SQL, beside
it). tests/integration/test_close_rule.py holds the two to each other."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

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


def score_answer(*, correct: bool, points: int, answered_ms: int, time_limit_s: int,
                 streak_before: int) -> Scored:
    if points == 0:
        # A question worth nothing neither scores nor touches the streak.
        return Scored(correct=correct, points=0, streak=streak_before)
    if not correct:
        return Scored(correct=False, points=0, streak=0)
    streak = streak_before + 1
    return Scored(correct=True, points=base_points(points, answered_ms, time_limit_s) + streak_bonus(streak),
                  streak=streak)


@dataclass(frozen=True)
class Standing:
    """A player's standing as of the last closed question."""

    score: int
    streak: int
    reached_at: datetime  # when the score was reached: equal scores rank by it


@dataclass(frozen=True)
class HeldAnswer:
    """An answer to the open question: scored (`score_answer`) when given, hidden until the close."""

    points: int
    streak: int  # the streak it leads to
    answered_at: datetime


def after_close(standing: Standing, answer: HeldAnswer | None, question_points: int) -> Standing:
    """A player's standing once a question closes. Their answer's points and streak become theirs (a
    score it raised was reached when they answered); no answer to a question that counts breaks the
    streak; a question worth nothing changes nothing without an answer."""
    if answer is not None:
        reached = answer.answered_at if answer.points > 0 else standing.reached_at
        return Standing(standing.score + answer.points, answer.streak, reached)
    if question_points > 0:
        return Standing(standing.score, 0, standing.reached_at)
    return standing


# `after_close` over every player of a session at once, in the close's transaction (:s the session, :q
# the question, :points its points): the held answers are counted and added, then the streaks of those
# who did not answer a question that counts are broken.
CLOSE_SQL = (
    """WITH counted AS (
           UPDATE participant_answers SET counted = true
           WHERE quiz_session_id = :s AND question_id = :q AND NOT counted
           RETURNING quiz_session_participant_id AS pid, points, streak, created_at)
       UPDATE quiz_session_participants p
       SET score = p.score + c.points, streak = c.streak,
           score_reached_at = CASE WHEN c.points > 0 THEN c.created_at ELSE p.score_reached_at END
       FROM counted c WHERE p.id = c.pid""",
    """UPDATE quiz_session_participants p SET streak = 0
       WHERE p.quiz_session_id = :s AND :points > 0 AND p.streak <> 0 AND NOT EXISTS (
           SELECT 1 FROM participant_answers a
           WHERE a.quiz_session_participant_id = p.id AND a.question_id = :q)""",
)


def close_params(session_id, question_id, points: int) -> list[dict]:
    """The parameters of each statement of CLOSE_SQL."""
    return [{"s": session_id, "q": question_id}, {"s": session_id, "q": question_id, "points": points}]
