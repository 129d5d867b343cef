"""The tracker on a real MLflow file store, read back with MLflow's own client: stages published
by a real RunDir (manifest.json, and metrics.json as rank 0 writes it), the config as
parameters, the DPO steps per stage and run-wide, filters on method/iteration/stage, and a
resumed or redone run logging nothing twice."""

from __future__ import annotations

import json
import os

from temporal_ray.storage.run_dir import RunDir
from temporal_ray.tracking import Tracker
from temporal_ray.tracking.mlflow_store import FILE_STORE

STEP_KEYS = ("loss", "reward_margin", "reward_accuracy", "chosen_logps", "rejected_logps",
             "grad_norm", "lr", "tokens_per_s")


def client_for(run: RunDir):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"file://{run.path(FILE_STORE)}")


def all_runs(client):
    (experiment,) = [e for e in client.search_experiments() if e.name == "run"]
    return experiment.experiment_id, client.search_runs([experiment.experiment_id])


def test_stages_steps_and_config_read_back_from_the_store(setup, run_stages):
    cfg, run = setup
    run_stages(cfg, run)
    client = client_for(run)
    experiment_id, runs = all_runs(client)
    (root,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert root.info.run_name == "temporal" and root.info.status == "FINISHED"
    assert root.data.params["dpo.beta"] == "0.2"
    assert root.data.params["tracking.mlflow.enabled"] == "True"
    assert root.data.tags["method"] == "temporal"

    # One nested run per stage, found by what a user filters on.
    stages = {r.data.tags["temporal_ray.key"]: r for r in runs if r is not root}
    assert set(stages) == {"iter_0/pairs_anchored", "iter_0/model_future", "iter_0/model"}
    (model,) = client.search_runs([experiment_id], "tags.stage = 'model' and "
                                  "tags.iteration = '0' and tags.method = 'temporal'")
    assert model.info.run_id == stages["iter_0/model"].info.run_id
    assert model.data.tags["mlflow.parentRunId"] == root.info.run_id
    pairs = stages["iter_0/pairs_anchored"]
    assert pairs.data.metrics["pairs"] == 6 and pairs.data.metrics["dropped.tie"] == 2
    assert pairs.data.params["kind"] == "pairs"
    assert "finished_at" not in pairs.data.metrics

    # Every DPO step, its values as metrics.json has them, in the stage's run...
    written = json.loads(open(f"{run.root}/iter_0/model/metrics.json").read())["history"]
    for key in STEP_KEYS:
        points = client.get_metric_history(model.info.run_id, f"dpo/{key}")
        assert [(p.step, p.value) for p in points] == [(h["step"], h[key]) for h in written]
    # ...and run-wide in the root: model_future's steps 1-4, then model's as 5-8.
    loss = client.get_metric_history(root.info.run_id, "dpo/loss")
    assert [p.step for p in loss] == list(range(1, 9))
    assert [p.value for p in loss][4:] == [h["loss"] for h in written]
    assert [p.value for p in client.get_metric_history(root.info.run_id, "collapse/mean_gap")] \
        == [0.5]
    with open(client.download_artifacts(model.info.run_id, "manifest.json")) as f:
        assert json.load(f)["optimizer_steps"] == 4


def test_a_resumed_run_continues_the_same_runs_without_duplicates(setup, run_stages):
    cfg, run = setup
    run_stages(cfg, run)
    client = client_for(run)
    _, before = all_runs(client)
    run_stages(cfg, run)  # the rerun: every stage reused, logged again
    _, after = all_runs(client)
    assert sorted(r.info.run_id for r in after) == sorted(r.info.run_id for r in before)
    for tracked in after:
        for key in tracked.data.metrics:
            steps = [p.step for p in client.get_metric_history(tracked.info.run_id, key)]
            assert len(steps) == len(set(steps)), (tracked.info.run_name, key)
    (root,) = [r for r in after if "mlflow.parentRunId" not in r.data.tags]
    assert len(client.get_metric_history(root.info.run_id, "dpo/loss")) == 8


def test_a_redone_stage_replaces_its_nested_run(setup, run_stages, publish_dpo,
                                                 dpo_history):
    cfg, run = setup
    run_stages(cfg, run)
    run.discard_from("iter_0/model")
    redone = publish_dpo(run, "iter_0/model", steps=4, start=0.5)
    tracker = Tracker.open(cfg, run, "temporal", method="temporal")
    tracker.log_stage("iter_0/model", redone.manifest, redone.path)
    client = client_for(run)
    experiment_id, _ = all_runs(client)
    (model,) = client.search_runs([experiment_id], "tags.stage = 'model'")
    assert [p.value for p in client.get_metric_history(model.info.run_id, "dpo/loss")] == [
        h["loss"] for h in dpo_history(4, 0.5)]


def test_mlflow_off_writes_no_store(setup, run_stages):
    cfg, run = setup
    cfg = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={
        "mlflow": cfg.tracking.mlflow.model_copy(update={"enabled": False})})})
    tracker = run_stages(cfg, run)
    assert tracker.runs == []
    assert not os.path.exists(run.path(FILE_STORE))
