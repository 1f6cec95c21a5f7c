import pytest

from app.quiz.domain.scoring import base_points, score_answer, streak_bonus


@pytest.mark.parametrize("answered_ms, expected", [
    (0, 1000), (499, 1000), (500, 988), (10_000, 750), (20_000, 500), (25_000, 500),
])
def test_base_points_follow_kahoots_rule(answered_ms, expected):
    assert base_points(1000, answered_ms, 20) == expected


def test_double_points_at_mid_time():
    assert base_points(2000, 10_000, 20) == 1500


@pytest.mark.parametrize("streak, bonus", [(0, 0), (1, 0), (2, 100), (3, 200), (6, 500), (10, 500)])
def test_streak_bonus_is_capped(streak, bonus):
    assert streak_bonus(streak) == bonus


def test_wrong_answer_scores_nothing_and_resets_streak():
    scored = score_answer(correct=False, points=1000, answered_ms=100, time_limit_s=20, streak_before=4)
    assert (scored.points, scored.streak) == (0, 0)


def test_second_correct_in_a_row_earns_the_bonus():
    scored = score_answer(correct=True, points=1000, answered_ms=0, time_limit_s=20, streak_before=1)
    assert (scored.points, scored.streak) == (1100, 2)


def test_zero_point_question_leaves_streak_alone():
    for correct in (True, False):
        scored = score_answer(correct=correct, points=0, answered_ms=0, time_limit_s=20, streak_before=3)
        assert (scored.points, scored.streak) == (0, 3)
