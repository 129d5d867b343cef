"""The miniature's config: its own section, and the experiment's whole config, the core
`Config` plus that section. The CLI reads every config file with `MiniatureRunConfig`, so
configs/miniature.yaml works with every command; nothing below the miniature knows of it."""

from __future__ import annotations

from pydantic import Field, model_validator

from temporal_ray.config import Config, Method, Section
from temporal_ray.miniature.tasks import KNOWN_FAMILIES


class QualityMix(Section):
    """Relative shares of the answer qualities among the EFT rows (tasks.Quality)."""

    off_topic: int = Field(1, ge=0)
    wrong_on_topic: int = Field(3, ge=0)
    correct_verbose: int = Field(2, ge=0)
    correct_clean: int = Field(2, ge=0)

    @model_validator(mode="after")
    def _not_all_zero(self) -> QualityMix:
        if not any(self.weights()):
            raise ValueError("at least one quality needs a share above 0")
        return self

    def weights(self) -> tuple[int, int, int, int]:
        """The shares in tasks.Quality's order, OFF_TOPIC first."""
        return (self.off_topic, self.wrong_on_topic, self.correct_verbose, self.correct_clean)


class MiniatureConfig(Section):
    """`temporal-ray miniature`: the paper in miniature on the synthetic task domain (tasks.py).
    Its base model, data, M0 and the model.path / data.prompts / sft.* paths all live under
    storage.run_dir and are set by the recipe."""

    seed: int = 0
    """Seeds the synthetic data and the tiny base model."""
    ift: int = Field(600, gt=0)
    """IFT rows (instructions with answers, a share of them flawed on purpose)."""
    families: list[str] = ["sortd"]
    """Task families (tasks.py): `sortd` sorts digits, where checking is easier than solving;
    add, reverse, sort and count are the word and number families."""
    digit_lengths: tuple[int, int] = (3, 6)
    """Shortest and longest digit string of a `sortd` task."""
    eft: int = Field(2400, gt=0)
    """EFT rows (judge prompts over answers of known quality, answered "reason. Score: k")."""
    eft_mix: QualityMix = QualityMix()
    """The shares of answer qualities in EFT: weighted to wrong answers, the distinction the
    judge finds hardest (telling a wrong sort from a right one)."""
    heldout: int = Field(128, gt=0)
    """Held-out tasks: greedy accuracy of every checkpoint, and the judge check's candidates."""
    iterations: dict[Method, int] = {Method.SELF_REWARDING: 4, Method.TEMPORAL: 2}
    """Iterations per method, all from the same M0 on the same prompt chunks; 4 against 2 is
    the paper's equal-compute comparison (a temporal iteration costs two of Self-Rewarding)."""
    @model_validator(mode="after")
    def _known_tasks(self) -> MiniatureConfig:
        unknown = [f for f in self.families if f not in KNOWN_FAMILIES]
        if unknown or not self.families:
            raise ValueError(f"miniature.families {self.families}: give one or more of "
                             f"{', '.join(KNOWN_FAMILIES)}")
        low, high = self.digit_lengths
        if not 2 <= low <= high:
            raise ValueError(f"miniature.digit_lengths {list(self.digit_lengths)}: give "
                             "[shortest, longest] with 2 <= shortest <= longest (a string of "
                             "one digit is already sorted)")
        return self

    hidden_size: int = Field(128, gt=0)
    layers: int = Field(4, gt=0)
    answer_tokens: int = Field(16, gt=0)
    """max_new_tokens of the greedy held-out answers."""


class MiniatureRunConfig(Config):
    """The config of `temporal-ray miniature`: the core sections and the `miniature` one."""

    miniature: MiniatureConfig = MiniatureConfig()
