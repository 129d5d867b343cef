"""Hand-made per-seed results.json dicts for the study's summary and report tests."""

from __future__ import annotations

from typing import Any

import pytest


def _checkpoint(method: str, index: int, compute: int, accuracy: float,
                agreement: float) -> dict[str, Any]:
    return {"method": method, "index": index, "compute": compute, "model": f"{method}/m{index}",
            "answers": {"answers": 8, "accuracy": accuracy, "clean_accuracy": accuracy},
            "judge": {"count": 8, "agreement": agreement, "spearman": agreement - 0.1,
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
