"""Stages as a real RunDir publishes them (manifest.json; metrics.json as rank 0 writes it) and
the driver's way of passing them to a tracker, for each backend's read-back tests."""

from __future__ import annotations

import json

import pytest

from temporal_ray.config import load_config
from temporal_ray.storage.run_dir import RunDir
from temporal_ray.tracking import Tracker


def history(steps: int, start: float) -> list[dict[str, float]]:
    """A DPO metrics.json history as training/loop.py writes it."""
    return [{"step": s, "epoch": (s - 1) // 2, "loss": start - 0.01 * s, "reward_margin": 0.1 * s,
             "reward_accuracy": 0.5 + 0.1 * s, "chosen_logps": -20.0 + s,
             "rejected_logps": -21.0 - s, "grad_norm": 1.0 / s, "lr": 1e-3, "tokens": 100,
             "tokens_per_s": 50.0 * s} for s in range(1, steps + 1)]


def publish_dpo(run: RunDir, stage: str, steps: int, start: float):
    def produce(tmp: str) -> dict:
        metrics = {"optimizer_steps": steps, "loss_before": 0.6931,
                   "history": history(steps, start)}
        with open(f"{tmp}/metrics.json", "w") as f:
            json.dump(metrics, f)
        return {k: v for k, v in metrics.items() if k != "history"}
    return run.run_stage(stage, produce, kind="dpo", start_model="/m0")


def publish_pairs(run: RunDir, stage: str):
    return run.run_stage(stage, lambda tmp: {"pairs": 6, "dropped": {"tie": 2, "no_score": 0}},
                         kind="pairs")


def run_stages(cfg, run: RunDir) -> Tracker:
    """What the driver does: open the run's tracker, pass each stage, finish."""
    tracker = Tracker.open(cfg, run, "temporal", {"method": "temporal"}, method="temporal")
    for stage in ("iter_0/pairs_anchored", "iter_0/model_future", "iter_0/model"):
        result = (publish_pairs(run, stage) if "pairs" in stage
                  else publish_dpo(run, stage, steps=4, start=0.69))
        tracker.log_stage(stage, result.manifest, result.path)
    tracker.log_metrics("collapse", {"mean_gap": 0.5, "dropped": {"tie": 2}}, step=0)
    tracker.finish()
    return tracker


@pytest.fixture
def setup(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    cfg = load_config(None, ["model.path=/m0", "data.prompts=/p.jsonl", "dpo.beta=0.2",
                             f"storage.run_dir={tmp_path / 'run'}"])
    return cfg, run




@pytest.fixture(name="dpo_history")
def _dpo_history():
    return history


@pytest.fixture(name="publish_dpo")
def _publish_dpo():
    return publish_dpo


@pytest.fixture(name="run_stages")
def _run_stages():
    """The driver's calls on three stages of iteration 0 (two of them DPO, 4 steps each)."""
    return run_stages
