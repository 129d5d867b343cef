"""Verdicts in both orders to win rates with intervals, on hand-made verdict rows (the judging
itself runs in test_driver.py)."""

from __future__ import annotations

import pytest

from temporal_ray.evaluate.intervals import win_rate_intervals
from temporal_ray.evaluate.verdicts import rates


def test_rates_resample_the_parsed_prompts_with_their_lengths():
    verdicts = [{"prompt_id": "a", "model_first": True, "verdict": "first"},
                {"prompt_id": "a", "model_first": False, "verdict": "second"},   # win
                {"prompt_id": "b", "model_first": True, "verdict": "second"},
                {"prompt_id": "b", "model_first": False, "verdict": "first"},    # loss
                {"prompt_id": "c", "model_first": True, "verdict": "tie"},       # tie
                {"prompt_id": "d", "model_first": True, "verdict": None}]        # unparsed
    mine = {i: {"response_tokens": t} for i, t in zip("abcd", (30, 10, 20, 99))}
    ref = {i: {"response_tokens": 15} for i in "abcd"}
    out = rates(verdicts, ["a", "b", "c", "d"], mine, ref)
    assert (out["wins"], out["ties"], out["losses"], out["unparsed"]) == (1, 1, 1, 1)
    assert out["win_rate"] == pytest.approx(0.5)
    expected = win_rate_intervals([1.0, 0.0, 0.5], [15, -5, 5])  # d is left out
    assert out["win_rate_ci"] == expected["win_rate"]
    assert out["length_controlled_win_rate_ci"] == expected["length_controlled_win_rate"]
