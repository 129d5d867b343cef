"""The bootstrap interval over seeds, against hand-worked numbers."""

from __future__ import annotations

import numpy as np
import pytest

from temporal_ray.analysis.bootstrap import Interval, bootstrap_mean, paired_difference


def test_all_equal_values_give_a_zero_width_interval():
    assert bootstrap_mean([0.3, 0.3, 0.3, 0.3]) == Interval(0.3, 0.3, 0.3, 4)


def test_one_value_gives_its_mean_and_no_interval():
    assert bootstrap_mean([0.7]) == Interval(0.7, None, None, 1)
    assert bootstrap_mean([None, 0.7]) == Interval(0.7, None, None, 1)
    assert bootstrap_mean([float("nan"), 0.7]) == Interval(0.7, None, None, 1)
    assert bootstrap_mean([]) == Interval(None, None, None, 0)
    assert bootstrap_mean([None]).n == 0


def test_interval_brackets_the_mean_is_ordered_and_deterministic():
    values = [0.1, 0.4, 0.35, 0.8, 0.5]
    first = bootstrap_mean(values)
    assert first.mean == pytest.approx(0.43)
    assert min(values) <= first.low <= first.mean <= first.high <= max(values)
    assert bootstrap_mean(values) == first
    # A 95% interval of the mean of 5 is narrower than the data's range.
    assert first.high - first.low < max(values) - min(values)


def test_paired_difference_by_hand_with_four_resamples():
    # Differences a - b per seed: [2, 3, 0], mean 5/3. The generator's first four resamples
    # of 3 seeds (pinned below) are seeds [2,1,1], [0,0,0], [0,0,0], [2,1,2]: resample means
    # (0+3+3)/3 = 2, 2, 2 and (0+3+0)/3 = 1. Sorted [1, 2, 2, 2]; numpy's linear quantile at
    # 0.025 sits 0.075 of the way from 1 to 2 -> 1.075; at 0.975 between the last two 2s -> 2.
    assert np.random.default_rng(0).integers(0, 3, size=(4, 3)).tolist() == [
        [2, 1, 1], [0, 0, 0], [0, 0, 0], [2, 1, 2]]
    diff = paired_difference([3, 5, 4], [1, 2, 4], resamples=4)
    assert diff.mean == pytest.approx(5 / 3)
    assert diff.low == pytest.approx(1.075)
    assert diff.high == pytest.approx(2.0)
    assert diff.n == 3


def test_paired_difference_drops_seeds_missing_either_value():
    diff = paired_difference([1.0, None, 3.0], [0.5, 0.2, None])
    assert diff == Interval(0.5, None, None, 1)
    with pytest.raises(ValueError):
        paired_difference([1.0], [1.0, 2.0])


def test_excludes_zero_only_on_the_claimed_side():
    above = Interval(0.2, 0.1, 0.3, 5)
    assert above.excludes_zero(+1) and not above.excludes_zero(-1)
    across = Interval(0.0, -0.1, 0.1, 5)
    assert not across.excludes_zero(+1) and not across.excludes_zero(-1)
    assert not Interval(0.2, None, None, 1).excludes_zero(+1)
