"""The miniature's config: its own section, and the experiment's whole config, the core
`Config` plus that section. The CLI reads every config file with `MiniatureRunConfig`, so
configs/miniature.yaml works with every command; nothing below the miniature knows of it."""

from __future__ import annotations

from pydantic import Field

from temporal_ray.config import Config, Method, Section


class MiniatureConfig(Section):
    """`temporal-ray miniature`: the paper in miniature on the synthetic task domain (tasks.py).
    Its base model, data, M0 and the model.path / data.prompts / sft.* paths all live under
    storage.run_dir and are set by the recipe."""

    seed: int = 0
    """Seeds the synthetic data and the tiny base model."""
    ift: int = Field(1200, gt=0)
    """IFT rows (instructions with answers, a share of them flawed on purpose)."""
    eft: int = Field(800, gt=0)
    """EFT rows (judge prompts over answers of known quality, answered "reason. Score: k")."""
    heldout: int = Field(128, gt=0)
    """Held-out tasks: greedy accuracy of every checkpoint, and the judge check's candidates."""
    iterations: dict[Method, int] = {Method.SELF_REWARDING: 4, Method.TEMPORAL: 2}
    """Iterations per method, all from the same M0 on the same prompt chunks; 4 against 2 is
    the paper's equal-compute comparison (a temporal iteration costs two of Self-Rewarding)."""
    hidden_size: int = Field(128, gt=0)
    layers: int = Field(4, gt=0)
    answer_tokens: int = Field(16, gt=0)
    """max_new_tokens of the greedy held-out answers."""


class MiniatureRunConfig(Config):
    """The config of `temporal-ray miniature`: the core sections and the `miniature` one."""

    miniature: MiniatureConfig = MiniatureConfig()
