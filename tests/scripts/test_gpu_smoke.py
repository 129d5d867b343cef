"""scripts/gpu_smoke.sh is for a GPU box; with `--engine hf` the same checks run here on the
tiny model, so the script a user runs is known to work up to the engine it picks."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from temporal_ray.miniature.recipe import TOY_JUDGE_TEMPLATE

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_smoke_script_passes_its_checks_on_the_cpu_engine(tiny_model, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(
        # Plain pools, on a local cluster of its own: the path a user's first try takes.
        ["bash", "scripts/gpu_smoke.sh", tiny_model, "--engine", "hf",
         "--judge-template", TOY_JUDGE_TEMPLATE, "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("[ok]") == 6 and "FAILED" not in done.stdout
    assert "generation: 24 requests" in done.stdout
    assert (tmp_path / "scores").is_dir()


def test_smoke_script_passes_its_checks_on_vllms_cpu_build(tiny_model, tmp_path, ray_cluster):
    """The script's vLLM path itself, on vLLM's CPU build, every check as on a GPU box: on one
    kept pool (one engine start for both generation passes and the judge), joining the
    session's Ray cluster through RAY_ADDRESS as a job on a cluster does."""
    pytest.importorskip("vllm", reason="vLLM is not installed (make install adds its CPU build)")
    import ray

    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    done = subprocess.run(
        ["bash", "scripts/gpu_smoke.sh", tiny_model, "--engine", "vllm", "--device", "cpu",
         "--keep-alive", "--judge-template", TOY_JUDGE_TEMPLATE, "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("[ok]") == 7 and "FAILED" not in done.stdout
    assert "[ok] one kept pool served both passes and the judge" in done.stdout
    assert "generation: 24 requests" in done.stdout
    assert (tmp_path / "scores").is_dir()


def test_without_a_gpu_the_vllm_check_says_so():
    done = subprocess.run(["bash", "scripts/gpu_smoke.sh", "/models/x"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    if done.returncode == 0 or "nvidia-smi" not in done.stderr:
        pytest.skip("this machine has a GPU")
    assert done.returncode == 2 and "needs a GPU" in done.stderr
