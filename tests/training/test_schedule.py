import math

import pytest

from temporal_ray.training.schedule import lr_factor


def test_no_warmup_starts_at_the_peak_and_ends_at_the_floor():
    factors = [lr_factor(s, total_steps=5, warmup_steps=0, min_ratio=0.1) for s in range(5)]
    assert factors[0] == 1.0
    assert factors[-1] == pytest.approx(0.1)
    # half-way through the decay: the cosine's midpoint
    assert factors[2] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in zip(factors, factors[1:]))


def test_linear_warmup_then_decay():
    factors = [lr_factor(s, total_steps=10, warmup_steps=4, min_ratio=0.0) for s in range(10)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == 1.0 and factors[-1] == pytest.approx(0.0)


def test_single_step_run_trains_at_the_peak():
    assert lr_factor(0, total_steps=1, warmup_steps=0, min_ratio=0.1) == 1.0
