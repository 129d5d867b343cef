"""The tracker with TensorBoard on (by config, beside MLflow), read back with TensorBoard's own
event reader: one directory per tracked run, the DPO steps per stage and run-wide as
metrics.json has them, the config as text, and a resumed run writing no step twice."""

from __future__ import annotations

import json

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from temporal_ray.tracking.mlflow_store import FILE_STORE

STEP_KEYS = ("loss", "reward_margin", "reward_accuracy", "chosen_logps", "rejected_logps",
             "grad_norm", "lr", "tokens_per_s")


def events(log_dir) -> EventAccumulator:
    reader = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    reader.Reload()
    return reader


def scalars(log_dir, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in events(log_dir).Scalars(tag)]


def with_tensorboard(cfg, mlflow: bool):
    return cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={
        "tensorboard": cfg.tracking.tensorboard.model_copy(update={"enabled": True}),
        "mlflow": cfg.tracking.mlflow.model_copy(update={"enabled": mlflow})})})


def test_tensorboard_event_files_hold_every_step(setup, run_stages):
    cfg, run = setup
    run_stages(with_tensorboard(cfg, mlflow=True), run)
    root = f"{run.root}/tensorboard/temporal"
    written = json.loads(open(f"{run.root}/iter_0/model/metrics.json").read())["history"]
    for key in STEP_KEYS:
        assert scalars(f"{root}/iter_0/model", f"dpo/{key}") == pytest_approx(
            [(h["step"], h[key]) for h in written])
    assert [s for s, _ in scalars(root, "dpo/loss")] == list(range(1, 9))  # both DPO stages
    assert scalars(f"{root}/iter_0/pairs_anchored", "dropped.tie") == [(0, 2.0)]
    assert scalars(root, "collapse/mean_gap") == [(0, 0.5)]
    assert "params/text_summary" in events(root).Tags()["tensors"]
    tags = json.loads(open(f"{root}/iter_0/model/tags.json").read())
    assert tags.items() >= {"stage": "model", "iteration": "0", "kind": "dpo",
                            "method": "temporal"}.items()
    assert run.fs.get_file_info(run.path(FILE_STORE)).type.name == "Directory"  # both on


def test_a_resumed_run_writes_no_step_twice(setup, run_stages):
    cfg, run = setup
    cfg = with_tensorboard(cfg, mlflow=False)
    run_stages(cfg, run)
    run_stages(cfg, run)
    root = f"{run.root}/tensorboard/temporal"
    for log_dir in (root, f"{root}/iter_0/model"):
        steps = [s for s, _ in scalars(log_dir, "dpo/loss")]
        assert len(steps) == len(set(steps))
    assert len(scalars(root, "dpo/loss")) == 8
    assert len(events(root).Tensors("params/text_summary")) == 1


def pytest_approx(points):
    """TensorBoard stores float32: the values as metrics.json has them, to float32 precision."""
    import pytest

    return [(step, pytest.approx(value, rel=1e-6)) for step, value in points]
