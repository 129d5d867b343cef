"""The mean over seeds and its 95% percentile bootstrap interval, and the same for paired
differences (the same seed under two methods).

In:  one number per seed; None (or NaN) where a seed has no value (an undefined statistic).
Out: an `Interval`. Deterministic: the resamples come from a fixed RNG seed, so the same values
     always give the same interval.
Undefined cases are None, never NaN: no values give mean None; one value gives its mean and
low = high = None, since a single seed says nothing about the spread.
Pure: numbers in, numbers out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

RESAMPLES = 10_000
LEVEL = 0.95
RNG_SEED = 0


@dataclass(frozen=True)
class Interval:
    """A mean over n seeds and its bootstrap interval [low, high]."""

    mean: float | None
    low: float | None
    high: float | None
    n: int

    def excludes_zero(self, direction: int) -> bool:
        """True when the whole interval lies on the `direction` side of 0 (+1 above, -1 below)."""
        if self.low is None or self.high is None:
            return False
        return self.low > 0 if direction > 0 else self.high < 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bootstrap_mean(values: Sequence[float | None], resamples: int = RESAMPLES,
                   level: float = LEVEL, seed: int = RNG_SEED) -> Interval:
    """The mean of the defined `values` and the percentile interval of the means of
    `resamples` resamples drawn with replacement (numpy's linear quantiles)."""
    kept = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    n = len(kept)
    if n == 0:
        return Interval(None, None, None, 0)
    mean = float(kept.mean())
    if n == 1:
        return Interval(mean, None, None, 1)
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    means = kept[draws].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    # Rounding in the resample means can put an all-equal sample's bounds an ulp off its mean.
    return Interval(mean, min(float(low), mean), max(float(high), mean), n)


def paired_difference(a: Sequence[float | None], b: Sequence[float | None],
                      resamples: int = RESAMPLES, level: float = LEVEL,
                      seed: int = RNG_SEED) -> Interval:
    """The mean of a_i - b_i over the seeds where both are defined, with its interval:
    resampling seeds keeps each seed's pair together."""
    if len(a) != len(b):
        raise ValueError(f"paired values need one of each per seed: {len(a)} against {len(b)}")
    diffs = [x - y for x, y in zip(a, b) if x is not None and y is not None]  # NaN: dropped below
    return bootstrap_mean(diffs, resamples, level, seed)
