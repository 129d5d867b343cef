"""Bootstrap intervals of the win rates on hand-worked cases, and the vectorised length
control against the one-fit-at-a-time version."""

from __future__ import annotations

import numpy as np
import pytest

from temporal_ray.evaluate.intervals import fit_length_controlled, win_rate_intervals
from temporal_ray.evaluate.winrate import length_controlled_win_rate


def test_all_wins_give_a_point_interval():
    out = win_rate_intervals([1.0] * 20, list(range(-10, 10)), resamples=200)
    assert out["win_rate"] == {"low": 1.0, "high": 1.0}
    # The length control of all wins is 1 up to its ridge, in every resample.
    full = length_controlled_win_rate([1.0] * 20, list(range(-10, 10)))
    lc = out["length_controlled_win_rate"]
    assert full == pytest.approx(lc["low"], abs=1e-4) and lc["high"] <= 1.0


def test_one_win_one_loss_spans_everything():
    # Two prompts: a resample's mean is 0, 1/2 or 1 with chances 1/4, 1/2, 1/4, so the 2.5th
    # and 97.5th percentiles of 1000 resamples are 0 and 1.
    out = win_rate_intervals([1.0, 0.0], [0, 0], resamples=1000)
    assert out["win_rate"] == {"low": 0.0, "high": 1.0}


def test_sixty_of_a_hundred_matches_the_normal_approximation():
    # 0.6 +- 1.96 * sqrt(0.6 * 0.4 / 100) = [0.504, 0.696]; equal lengths, so the length
    # control is the plain rate and has the same interval.
    out = win_rate_intervals([1.0] * 60 + [0.0] * 40, [0] * 100)
    assert out["win_rate"]["low"] == pytest.approx(0.504, abs=0.02)
    assert out["win_rate"]["high"] == pytest.approx(0.696, abs=0.02)
    for bound in ("low", "high"):
        assert out["length_controlled_win_rate"][bound] == pytest.approx(
            out["win_rate"][bound], abs=1e-3)


def test_the_same_verdicts_give_the_same_interval():
    prefs, diffs = [1.0, 0.5, 0.0, 1.0, 0.75, 0.0, 1.0], [30, -5, -20, 12, 0, 8, 40]
    first = win_rate_intervals(prefs, diffs, resamples=300)
    assert win_rate_intervals(prefs, diffs, resamples=300) == first
    assert win_rate_intervals(prefs, diffs, resamples=300, seed=1) != first
    # Mirrored verdicts and lengths, the same resamples: a mirrored interval.
    mirrored = win_rate_intervals([1 - p for p in prefs], [-d for d in diffs], resamples=300)
    for key in first:
        assert mirrored[key]["low"] == pytest.approx(1 - first[key]["high"], abs=1e-6)
        assert mirrored[key]["high"] == pytest.approx(1 - first[key]["low"], abs=1e-6)


def test_vectorised_fit_equals_the_scalar_fit_on_each_resample():
    prefs = np.array([1.0, 0.5, 0.0, 1.0, 0.75, 0.0, 1.0, 1.0])
    diffs = np.array([30, -5, -20, 12, 0, 8, 40, -3], dtype=float)
    draws = np.random.default_rng(3).integers(0, len(prefs), size=(6, len(prefs)))
    draws[0] = 0  # one resample of a single prompt: all lengths equal, scale 1
    fitted = fit_length_controlled(prefs[draws], diffs[draws])
    for row, value in zip(draws, fitted):
        assert value == pytest.approx(
            length_controlled_win_rate(list(prefs[row]), list(diffs[row])), abs=1e-9)


def test_no_prompts_no_interval():
    out = win_rate_intervals([], [])
    assert out["win_rate"] == out["length_controlled_win_rate"] == {"low": None, "high": None}
    with pytest.raises(ValueError, match="one length difference per preference"):
        win_rate_intervals([1.0], [1, 2])
