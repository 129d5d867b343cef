"""A driver killed mid-iteration (SIGKILL of `temporal-ray run`): the same command resumes
from the last finished stage; killed again while it publishes the trained model (its files
and manifest written, not yet renamed into place), the next rerun trains it again and never
takes the half-published copy; it ends with the prompt sets and counts of a complete run.
While the first run is alive, a second one on the same run directory is refused by name; once
it is killed, its lock does not keep the rerun out. The run's MLflow store (the embedded
default, read back with MLflow's own client) continues the killed run's tracked run: every stage
a nested run once, every DPO step of rank 0's metrics.json, no point twice."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from temporal_ray.storage.files import read_rows

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

PROMPTS, SAMPLES = 4, 2  # conftest.py's short run
SYSTEM = "Answer in one short sentence."  # its chat prompts' system prompt, on every other


def run_command(config: Path) -> list[str]:
    return [sys.executable, "-m", "temporal_ray", "run", str(config)]


def test_killed_driver_resumes_from_the_last_finished_stage(tiny_model, tmp_path, chaos_record,
                                                            short_run_config):
    config = short_run_config(tmp_path, tiny_model, tmp_path / "run")
    run_dir = tmp_path / "run" / "iter_0"
    first_err = tmp_path / "first.stderr"  # read when the run ends too soon
    with first_err.open("w") as err:
        first = subprocess.Popen(run_command(config), stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.time() + 600
        while not (run_dir / "candidates_present" / "manifest.json").exists():
            assert first.poll() is None, ("the run ended before it could be killed: "
                                          + first_err.read_text()[-3000:])
            assert time.time() < deadline, "no stage finished within 10 minutes"
            time.sleep(0.5)
        blocked = subprocess.run(run_command(config), capture_output=True, text=True,
                                 timeout=300)
        refused = blocked.returncode == 2 and f"in use by process {first.pid}" in blocked.stderr
        chaos_record("second run on a run directory in use", 1, refused, 0)
        assert refused, blocked.stderr[-3000:]
        assert first.poll() is None, "the first run ended before it could be killed"
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
    finished_before = {p.parent.name: json.loads(p.read_text())["finished_at"]
                       for p in run_dir.glob("*/manifest.json")}
    assert {"prompts", "candidates_present"} <= set(finished_before)
    assert not (run_dir / "model" / "manifest.json").exists()

    half = publish_killed(config, run_dir)
    second = subprocess.run(run_command(config), capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    model = json.loads((run_dir / "model" / "manifest.json").read_text())
    assert model["finished_at"] > half["finished_at"]  # trained and published again
    pairs = len(read_rows(str(run_dir / "pairs" / "data")))
    same = same_weights(run_dir / "model", half["dir"])
    chaos_record("driver SIGKILL while a checkpoint is written", 1, same,
                 pairs - model["pairs"])
    assert same and model["pairs"] == pairs
    for stage, finished_at in finished_before.items():  # nothing finished was redone
        manifest = json.loads((run_dir / stage / "manifest.json").read_text())
        assert manifest["finished_at"] == finished_at, stage
    assert "done before" in second.stdout

    prompts = read_rows(str(run_dir / "prompts" / "data"))
    prompt_ids = {r["prompt_id"] for r in prompts}
    assert len(prompt_ids) == PROMPTS
    # The chat prompts' system prompts stay with their prompts to the DPO pairs.
    systems = {r["prompt_id"]: r["system"] for r in prompts}
    assert sorted(systems.values()) == ["", "", SYSTEM, SYSTEM]
    assert all(systems[p["prompt_id"]] == p["system"]
               for p in read_rows(str(run_dir / "pairs" / "data")))
    lost = 0
    for role in ("present",):
        rows = read_rows(str(run_dir / f"candidates_{role}" / "data"))
        lost += PROMPTS * SAMPLES - len({(r["prompt_id"], r["sample_index"]) for r in rows})
        assert len(rows) == PROMPTS * SAMPLES
        assert {r["prompt_id"] for r in rows} == prompt_ids
    chaos_record("driver SIGKILL mid-iteration, rerun", 1, second.returncode == 0, lost)
    assert (run_dir / "model" / "model.safetensors").exists()
    assert not list(run_dir.glob("*.tmp-*")), "a temporary stage directory was left behind"
    check_tracked_once(tmp_path / "run")


def publish_killed(config: Path, run_dir: Path) -> dict:
    """Rerun, SIGKILLed by the run directory's test hook as it publishes iter_0/model; returns
    the half-published model's manifest and a copy of its directory."""
    from temporal_ray.storage.run_dir import KILL_AT_ENV

    killed = subprocess.run(run_command(config), capture_output=True, text=True, timeout=900,
                            env={**os.environ, KILL_AT_ENV: "iter_0/model"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (run_dir / "model").exists()  # not published
    (half,) = run_dir.glob("model.tmp-*")
    copy = shutil.copytree(half, run_dir.parents[1] / "half_published")  # outside the run
    return {**json.loads((half / "manifest.json").read_text()), "dir": copy}


def same_weights(a: Path, b: Path) -> bool:
    import torch
    from safetensors.torch import load_file

    first, second = (load_file(str(d / "model.safetensors")) for d in (a, b))
    return first.keys() == second.keys() and all(
        torch.allclose(first[k], second[k], atol=1e-5) for k in first)


STAGES = {"prompts", "candidates_present", "scores_present", "pairs", "model"}


def check_tracked_once(run: Path) -> None:
    from mlflow import MlflowClient

    # MLflow 3 reads a file store only when asked to (the run's own tracker asks, in its
    # process; this reader is another one).
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    history = json.loads((run / "iter_0" / "model" / "metrics.json").read_text())["history"]
    client = MlflowClient(tracking_uri=f"file://{run / 'mlruns'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == run.name]
    runs = client.search_runs([experiment.experiment_id])
    (top,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert top.info.status == "FINISHED" and top.data.params["dpo.epochs"] == "1"
    assert top.data.tags["method"] == "self_rewarding"
    assert "summary.json" in {a.path for a in client.list_artifacts(top.info.run_id)}
    stages = [r.data.tags["stage"] for r in runs if r is not top]
    assert sorted(stages) == sorted(STAGES)  # the killed run's stages are not logged again
    (model,) = [r for r in runs if r.data.tags.get("stage") == "model"]
    assert model.data.tags["iteration"] == "0"
    for key in ("loss", "reward_margin", "reward_accuracy", "chosen_logps", "rejected_logps",
                "grad_norm", "lr", "tokens_per_s"):
        for tracked in (model, top):
            points = client.get_metric_history(tracked.info.run_id, f"dpo/{key}")
            assert [(p.step, p.value) for p in points] == [(h["step"], h[key])
                                                           for h in history], key
