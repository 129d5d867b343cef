"""Win-rate arithmetic on hand-made judgements: both orders, ties, unparsed, length control."""

from __future__ import annotations

import pytest

from temporal_ray.evaluate.winrate import (
    length_controlled_win_rate,
    order_score,
    parse_verdict,
    prompt_preference,
    win_rate,
)


def test_parse_verdict_takes_the_last_one():
    assert parse_verdict("A is fine. Winner: second") == "second"
    assert parse_verdict("Winner: first ... on reflection Winner: TIE") == "tie"
    assert parse_verdict("both are good") is None


def test_order_scores_follow_the_position_of_the_model():
    assert order_score("first", model_first=True) == 1.0
    assert order_score("first", model_first=False) == 0.0
    assert order_score("second", model_first=False) == 1.0
    assert order_score("tie", model_first=True) == 0.5
    assert order_score(None, model_first=True) is None


def test_both_orders_cancel_position_bias():
    assert prompt_preference("first", "second") == 1.0   # model preferred in both orders
    assert prompt_preference("first", "first") == 0.5    # the judge always picks position 1
    assert prompt_preference("second", "first") == 0.0
    assert prompt_preference("tie", "second") == 0.75
    assert prompt_preference(None, "second") == 1.0       # one parsed order decides
    assert prompt_preference(None, None) is None


def test_win_rate_counts_by_hand():
    prefs = [1.0, 0.5, 0.0, 0.75, None]
    result = win_rate(prefs, model_lengths=[10, 20, 30, 40, 99],
                      reference_lengths=[10, 10, 10, 10, 1])
    assert result["prompts"] == 5 and result["unparsed"] == 1
    assert (result["wins"], result["ties"], result["losses"]) == (2, 1, 1)
    assert result["win_rate"] == pytest.approx((1 + 0.5 + 0 + 0.75) / 4)
    assert result["mean_model_length"] == pytest.approx(25.0)  # the unparsed prompt is out
    assert result["mean_reference_length"] == pytest.approx(10.0)
    with pytest.raises(ValueError, match="one model and one reference length"):
        win_rate([1.0], [1, 2], [1])


def test_length_control_changes_nothing_when_lengths_are_equal():
    prefs = [1.0, 1.0, 0.0, 0.5]
    assert length_controlled_win_rate(prefs, [0, 0, 0, 0]) == pytest.approx(0.625, abs=1e-4)
    assert length_controlled_win_rate([], []) is None


def test_length_control_removes_a_preference_for_longer_answers():
    # The model is longer on 8 of 10 prompts and wins 7 of them; shorter on 2, it wins 1.
    # Two length groups, two parameters: the fit is exact, theta + phi*c = logit(7/8) = ln 7
    # and theta - phi*c = logit(1/2) = 0, so the equal-length rate is sigmoid(ln(7) / 2).
    diffs = [50] * 8 + [-50] * 2
    prefs = [1.0] * 7 + [0.0] + [1.0, 0.0]
    raw = sum(prefs) / len(prefs)
    controlled = length_controlled_win_rate(prefs, diffs)
    assert raw == pytest.approx(0.8)
    assert controlled == pytest.approx(1 / (1 + 7 ** -0.5), abs=1e-3)  # 0.7257
    assert controlled < raw
    # Mirror image: the same judge, but the model is the shorter side -> raised, not lowered.
    mirrored = length_controlled_win_rate([1 - p for p in prefs], [-d for d in diffs])
    assert mirrored == pytest.approx(1 - controlled, abs=1e-6)
