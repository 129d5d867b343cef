"""The learning-rate schedule: linear warmup, then cosine decay from lr to min_lr. Pure.

Used as a torch LambdaLR factor, so the first optimizer step already runs at its scheduled
rate (DeepSpeed's WarmupCosineLR starts its first step at 0 when there is no warmup).
"""

from __future__ import annotations

import math


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Multiplier of the peak lr for optimizer step `step` (0-based)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(total_steps - warmup_steps - 1, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
