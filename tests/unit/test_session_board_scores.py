"""The composite sorted-set score: exact, ordered by score then by who reached it first."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.core.clock import instant_ms
from app.quiz.board.scores import MAX_REACHED_MS, MAX_SCORE, TIE_SPAN, composite, reached_ms, split


def test_higher_score_ranks_higher_whatever_the_reach_time():
    assert composite(1001, MAX_REACHED_MS) > composite(1000, 0)


def test_equal_scores_rank_who_reached_them_first_higher():
    assert composite(1000, 5) > composite(1000, 6)


def test_round_trip_is_exact_at_the_bounds():
    for score in (0, 1, 250_000, MAX_SCORE):
        for reached in (0, 1, 123_456_789, MAX_REACHED_MS):
            value = composite(score, reached)
            assert split(value) == (score, reached)
            assert float(value) == value  # a double holds it exactly
            assert split(float(value)) == (score, reached)


def test_largest_composite_stays_below_2_pow_53():
    assert composite(MAX_SCORE, 0) < 2 ** 53
    assert TIE_SPAN == 2 ** 34


def test_out_of_range_values_are_refused():
    with pytest.raises(ValueError):
        composite(MAX_SCORE + 1, 0)
    with pytest.raises(ValueError):
        composite(-1, 0)
    with pytest.raises(ValueError):
        composite(0, MAX_REACHED_MS + 1)


def test_reached_is_clamped_to_its_field():
    assert reached_ms(10_000, 9_000) == 0
    assert reached_ms(0, 2 ** 40) == MAX_REACHED_MS
    assert reached_ms(1_000, 1_250) == 250


def test_instant_ms_floors_microseconds_exactly():
    moment = datetime(2026, 3, 1, 12, 0, 0, 999_999, tzinfo=UTC)
    assert instant_ms(moment) == instant_ms(moment.replace(microsecond=0)) + 999
    assert instant_ms(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=1999)) == 1
    with pytest.raises(ValueError):
        instant_ms(datetime(2026, 1, 1))
