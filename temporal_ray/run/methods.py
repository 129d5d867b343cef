"""One iteration of each method, read line by line against ../shared/method.md.

Each function takes the iteration's stages, its prompt chunk, the present model M_i and the
past model M0, and returns the path of M_{i+1}. Every line is one stage; finished stages are
not redone when a run resumes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from temporal_ray.core.pairs import anchored_rejection, best_vs_worst, future_guided
from temporal_ray.core.roles import Role
from temporal_ray.run.iteration import IterationStages, read_scored


def temporal_iteration(stages: IterationStages, prompts: str, present: str, past: str) -> str:
    """Temporal Self-Rewarding: anchored rejection, then future-guided chosen."""
    # Phase 1, anchored rejection: M_i judges K samples of M_i and K of M0. M0's come first,
    # so that a kept pool of M_i (engine.keep_alive) still runs when M_i judges.
    past_candidates, present_candidates = stages.generate_together(
        {Role.PAST: past, Role.PRESENT: present}, prompts)
    scores = stages.judge("scores_present_past", [present_candidates, past_candidates],
                          judge_model=present)

    d1 = stages.pairs("pairs_anchored", lambda: anchored_rejection(
        read_scored(scores, Role.PRESENT), read_scored(scores, Role.PAST)))
    future = stages.dpo("model_future", d1, start_model=present)

    # Phase 2, future-guided chosen: M_i (not M_f) judges K samples of M_f.
    future_candidates = stages.generate(Role.FUTURE, future, prompts)
    future_scores = stages.judge("scores_future", [future_candidates], judge_model=present)
    # Phase 2 starts from the selections phase 1 stored beside D1.
    d2 = stages.pairs("pairs_future_guided", lambda: future_guided(
        stages.phase_one("pairs_anchored"), read_scored(future_scores)))
    return stages.dpo("model", d2, start_model=present)


def self_rewarding_iteration(stages: IterationStages, prompts: str, present: str,
                             past: str) -> str:
    """Standard Self-Rewarding (Yuan et al.): best vs worst of the present model's samples."""
    candidates = stages.generate(Role.PRESENT, present, prompts)
    scores = stages.judge("scores_present", [candidates], judge_model=present)
    pairs = stages.pairs("pairs", lambda: best_vs_worst(read_scored(scores)))
    return stages.dpo("model", pairs, start_model=present)


Iteration = Callable[[IterationStages, str, str, str], str]


@dataclass(frozen=True)
class MethodSpec:
    """One method, all that the run and its analysis need to know of it."""

    iteration: Iteration
    update_pairs: str
    """The pair stage whose pairs train M_{i+1}: what the collapse measurements look at."""
    dpo_runs: int
    """DPO runs per iteration: the compute behind a checkpoint (M_k took k x dpo_runs)."""
    stages: tuple[str, ...]
    """The stages `iteration` makes, in order, after the driver's `prompts` stage: what
    `temporal-ray status` expects of an iteration (tests/run/test_methods.py replays each
    iteration function over finished stages and checks it passes exactly these)."""


METHODS: dict[str, MethodSpec] = {
    "temporal": MethodSpec(
        temporal_iteration, "pairs_future_guided", dpo_runs=2,
        stages=("candidates_past", "candidates_present", "scores_present_past",
                "pairs_anchored", "model_future", "candidates_future", "scores_future",
                "pairs_future_guided", "model")),
    "self_rewarding": MethodSpec(
        self_rewarding_iteration, "pairs", dpo_runs=1,
        stages=("candidates_present", "scores_present", "pairs", "model")),
}
