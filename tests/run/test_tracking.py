"""`temporal-ray run` tracked in MLflow (the embedded default: a file store in the run directory),
read back with MLflow's own client: the config as parameters, every stage a nested run, every
DPO step of rank 0's metrics.json; a rerun (every stage reused) continues the same runs
without a point twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from temporal_ray.config import load_config
from temporal_ray.run.driver import run_experiment

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
PROMPTS = CONFIG.parents[1] / "temporal_ray" / "assets" / "tiny_prompts.jsonl"
STAGES = {"prompts", "candidates_present", "scores_present", "pairs", "model"}


def test_a_run_is_tracked_and_a_rerun_logs_nothing_twice(tiny_model, ray_cluster, tmp_path):
    from mlflow import MlflowClient

    run_dir = tmp_path / "tiny"
    cfg = load_config(CONFIG, [
        f"model.path={tiny_model}", f"data.prompts={PROMPTS}",
        "data.prompts_per_iteration=4", "method.name=self_rewarding", "method.iterations=1",
        "generation.samples=2", "generation.max_new_tokens=8", "dpo.batch_size=4",
        "dpo.micro_batch_size=2", "dpo.epochs=2", "engine.actors=1", "engine.batch_size=8",
        f"storage.run_dir={run_dir}"])
    run_experiment(cfg)
    history = json.loads((run_dir / "iter_0" / "model" / "metrics.json").read_text())["history"]
    client = MlflowClient(tracking_uri=f"file://{run_dir / 'mlruns'}")

    def read_back() -> tuple[str, dict[str, str]]:
        (experiment,) = [e for e in client.search_experiments() if e.name == "tiny"]
        runs = client.search_runs([experiment.experiment_id])
        (top,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
        assert top.info.status == "FINISHED" and top.data.params["dpo.epochs"] == "2"
        assert top.data.tags["method"] == "self_rewarding"
        assert "summary.json" in {a.path for a in client.list_artifacts(top.info.run_id)}
        stages = {r.data.tags["stage"]: r for r in runs if r is not top}
        assert set(stages) == STAGES
        assert all(r.data.tags["iteration"] == "0" for r in stages.values())
        assert stages["candidates_present"].data.metrics["rows"] == 4 * 2
        for key in ("loss", "reward_margin", "reward_accuracy", "chosen_logps",
                    "rejected_logps", "grad_norm", "lr", "tokens_per_s"):
            for run in (stages["model"], top):
                points = client.get_metric_history(run.info.run_id, f"dpo/{key}")
                assert [(p.step, p.value) for p in points] == [(h["step"], h[key])
                                                               for h in history], key
        return top.info.run_id, {s: r.info.run_id for s, r in stages.items()}

    first = read_back()
    run_experiment(cfg)  # every stage reused
    assert read_back() == first
