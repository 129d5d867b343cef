"""The miniature at CI size, run once for the tests that read it (the recipe's, and the
study's as its seed 0), and hand-made per-seed results.json dicts for the study's summary
and report tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "miniature.yaml"
CI_PROMPTS = 8
CI_SAMPLES = 3


def ci_overrides(run_dir: Path) -> list[str]:
    """The paper in miniature shortened for CI: small data, a short SFT, and the smallest
    pair of runs at equal compute (2 Self-Rewarding iterations against 1 temporal one: two
    DPO runs each, run/methods.py)."""
    return [
        f"storage.run_dir={run_dir}", "miniature.ift=300", "miniature.eft=300",
        "miniature.heldout=16", "miniature.iterations={self_rewarding: 2, temporal: 1}",
        f"data.prompts_per_iteration={CI_PROMPTS}", f"generation.samples={CI_SAMPLES}",
        "sft.epochs=4", "sft.batch_size=32", "sft.micro_batch_size=16",
        "judge.min_valid_share=0.0",  # a briefly trained judge: the pipeline is under test
        "engine.batch_size=16",
    ]


def ci_config(run_dir: Path):
    from temporal_ray.config import load_config
    from temporal_ray.miniature.config import MiniatureRunConfig

    return load_config(CONFIG, ci_overrides(run_dir), schema=MiniatureRunConfig)


@dataclass
class CIRun:
    root: Path
    cfg: Any
    results: dict[str, Any]


@pytest.fixture(scope="session")
def ci_study_root(tmp_path_factory) -> Path:
    """Where the CI study lives: its seed 0 is ci_miniature's run."""
    return tmp_path_factory.mktemp("ci-study") / "study"


@pytest.fixture(scope="session")
def ci_miniature(ray_for_session_fixtures, ci_study_root) -> CIRun:
    """One run of the CI-sized miniature (seed 0), as run_miniature returned it, in the
    directory where the study's seed 0 goes."""
    from temporal_ray.miniature.recipe import run_miniature

    root = ci_study_root / "seed_0"
    cfg = ci_config(root)
    return CIRun(root, cfg, run_miniature(cfg))


@pytest.fixture(scope="session")
def ci_study(ci_miniature, ci_study_root) -> CIRun:
    """`temporal-ray study` over the CI-sized miniature's real run, its seed 0, read back as
    any finished seed is. (A second real seed would cost the suite 3 minutes; studies of
    several seeds run on hand-made results in test_study.py.)"""
    from temporal_ray.miniature.study import run_study

    cfg = ci_config(ci_study_root.parent / "mini")
    return CIRun(ci_study_root, cfg, run_study(cfg, seeds=1, out=str(ci_study_root)))


def _checkpoint(method: str, index: int, compute: int, accuracy: float,
                agreement: float) -> dict[str, Any]:
    return {"method": method, "index": index, "compute": compute, "model": f"{method}/m{index}",
            "answers": {"answers": 8, "accuracy": accuracy, "clean_accuracy": accuracy},
            "judge": {"count": 8, "agreement": agreement, "single_agreement": agreement + 0.05,
                      "spearman": agreement - 0.1,
                      "correct_vs_wrong_auc": 0.5 + agreement / 10, "unparsed_share": 0.0}}


def _iteration(method: str, i: int, gap: float, cosine: float) -> dict[str, Any]:
    return {"method": method, "iteration": i, "count": 8, "dropped": {}, "mean_gap": gap,
            "cosine": cosine, "mean_chosen_score": 4.0, "mean_rejected_score": 4.0 - gap,
            "dpo_reward_margin": gap / 10, "dpo_mean_grad_norm": 1.0 + i}


def fake_seed(s: int) -> dict[str, Any]:
    """Seed s (0, 1, 2), Self-Rewarding for 4 iterations and Temporal for 2 (equal compute).
    M0 accuracy 0.2 + 0.1 s. Self-Rewarding's M_k adds 0.025 k (final: M0 + 0.1), Temporal's
    (0.1 + 0.05 s) k (final: M0 + 0.2 + 0.1 s). Self-Rewarding's gap falls from 2 by
    (1 + 0.1 s) / 3 an iteration (last: 1 - 0.1 s) while its cosine rises 0.05 an iteration
    (0.5 to 0.65); Temporal's gap stays 2 and its cosine 0.5."""
    m0 = 0.2 + 0.1 * s
    drop = (1 + 0.1 * s) / 3
    return {
        "checkpoints": [
            *(_checkpoint("self_rewarding", k, k, m0 + 0.025 * k, 0.5 - 0.02 * k)
              for k in range(5)),
            *(_checkpoint("temporal", k, 2 * k, m0 + (0.1 + 0.05 * s) * k, 0.5 + 0.05 * k)
              for k in range(3)),
        ],
        "iterations": [
            *(_iteration("self_rewarding", i, 2.0 - drop * i, 0.5 + 0.05 * i) for i in range(4)),
            *(_iteration("temporal", i, 2.0, 0.5) for i in range(2)),
        ],
        "form_only_judge": {"agreement": 0.25, "spearman": 0.1, "correct_vs_wrong_auc": 0.5},
        "settings": {"title": "The paper in miniature", "held-out tasks": 8},
        "compute": {"self_rewarding": {"generated_tokens": 100 + s, "note": "text"},
                    "temporal": {"generated_tokens": 300 + s}},
    }


@pytest.fixture
def seed_results() -> list[dict[str, Any]]:
    return [fake_seed(s) for s in range(3)]


@pytest.fixture
def make_seed_results():
    """fake_seed itself, for tests that write a seed's results.json."""
    return fake_seed
