"""A real `ray start --head` on this machine, then `ray job submit` of a one-iteration tiny run
(the self-rewarding loop: the cheaper of the two, on the same entrypoint and stages)
through jobs/run.py, with the repository as the working dir and cluster/runtime_env.yaml as the
runtime env (less its pip list: this machine installs nothing). The job succeeds and the run
directory holds every stage and the trained model. A second job evaluates that run through
jobs/eval.py and writes its table and plot. The training prompts come as a Hugging Face
dataset saved to disk, the held-out prompts as a JSON list in AlpacaEval's eval-set format.
The cluster is stopped after.

The cluster gets its own ports, temp dir and auth token, so it neither joins nor disturbs the
single-node cluster the other tests share.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from temporal_ray.storage.files import read_rows

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).with_name("ray")


@pytest.fixture
def head_node(free_ports):
    """`ray start --head --block` as a child process; yields (dashboard address, env)."""
    gcs, dashboard, client, node_manager, object_manager, agent_listen, agent_grpc, \
        metrics, runtime_env_agent = free_ports(9)
    temp_dir = tempfile.mkdtemp(prefix="rj", dir="/tmp")  # short: Unix socket paths are capped
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [str(RAY), "start", "--head", "--block", "--num-cpus=4", "--disable-usage-stats",
         f"--port={gcs}", f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1",
         f"--ray-client-server-port={client}", f"--node-manager-port={node_manager}",
         f"--object-manager-port={object_manager}",
         f"--dashboard-agent-listen-port={agent_listen}",
         f"--dashboard-agent-grpc-port={agent_grpc}", f"--metrics-export-port={metrics}",
         f"--runtime-env-agent-port={runtime_env_agent}", f"--temp-dir={temp_dir}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.time() + 120
        while subprocess.run([str(RAY), "job", "list", "--address", address], env=env,
                             capture_output=True).returncode != 0:
            assert head.poll() is None, "ray start --head exited"
            assert time.time() < deadline, "the head's job server did not come up in 120 s"
            time.sleep(2)
        yield address, env
    finally:
        # SIGTERM to `ray start --block` stops what it started; its graceful stop takes
        # half a minute, so whatever is left of the group after a few seconds is killed.
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


def write_inputs(tmp_path: Path) -> tuple[Path, Path]:
    """The bundled prompts as a saved dataset with an `instruction` field, and the first four
    as AlpacaEval's eval set lays out its rows (instruction, output, generator, dataset)."""
    import datasets

    rows = [json.loads(line) for line in
            (ROOT / "temporal_ray" / "assets" / "tiny_prompts.jsonl").read_text().splitlines()]
    saved = tmp_path / "prompts_dataset"
    datasets.Dataset.from_list([{"id": r["prompt_id"], "instruction": r["prompt"]}
                                for r in rows]).save_to_disk(str(saved))
    heldout = tmp_path / "alpaca_eval.json"
    heldout.write_text(json.dumps([{"instruction": r["prompt"], "output": "reference answer",
                                    "generator": "reference", "dataset": "tiny"}
                                   for r in rows[:4]]))
    return saved, heldout


def test_ray_job_submit_runs_the_tiny_experiment(head_node, tiny_model, tmp_path):
    address, env = head_node
    saved, heldout = write_inputs(tmp_path)
    runtime_env = yaml.safe_load((ROOT / "cluster" / "runtime_env.yaml").read_text())
    runtime_env.pop("pip")  # our dependencies are installed here already
    run_dir = tmp_path / "run"
    overrides = [
        f"model.path={tiny_model}", f"storage.run_dir={run_dir}", "method.iterations=1",
        "method.name=self_rewarding",  # one generation and one DPO stage: the cheaper loop
        f"data.prompts={{path: {saved}, prompt_field: instruction, id_field: id}}",
        "data.prompts_per_iteration=4", "generation.samples=2", "generation.max_new_tokens=8",
        "dpo.batch_size=4", "dpo.micro_batch_size=2", "dpo.epochs=1", "engine.actors=1"]
    submit = subprocess.run(
        [str(RAY), "job", "submit", "--address", address, "--working-dir", str(ROOT),
         "--runtime-env-json", json.dumps(runtime_env), "--",
         sys.executable, "jobs/run.py", "--config", "configs/tiny.yaml", *overrides],
        env=env, capture_output=True, text=True, timeout=900)
    assert submit.returncode == 0, submit.stdout[-4000:] + submit.stderr[-2000:]
    assert "succeeded" in submit.stdout

    stages = {p.parent.name for p in (run_dir / "iter_0").glob("*/manifest.json")}
    prompts = read_rows(str(run_dir / "iter_0" / "prompts" / "data"))
    assert [r["prompt_id"] for r in prompts] == ["p00", "p01", "p02", "p03"]
    assert {"prompts", "candidates_present", "model"} <= stages
    assert (run_dir / "iter_0" / "model" / "model.safetensors").exists()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["iterations"][0]["model"].endswith("iter_0/model")
    assert "final model:" in submit.stdout

    # Evaluate it: M1 against M0 on four prompts, the model judging itself.
    evaluate = subprocess.run(
        [str(RAY), "job", "submit", "--address", address, "--working-dir", str(ROOT),
         "--runtime-env-json", json.dumps(runtime_env), "--",
         sys.executable, "jobs/eval.py", "--config", "configs/tiny.yaml", *overrides,
         f"eval.prompts={heldout}", "eval.prompt_field=instruction", "eval.max_prompts=4",
         "eval.max_new_tokens=8", "eval.judge.max_new_tokens=8"],
        env=env, capture_output=True, text=True, timeout=600)
    assert evaluate.returncode == 0, evaluate.stdout[-4000:] + evaluate.stderr[-2000:]
    results = json.loads((run_dir / "evaluation" / "results.json").read_text())
    assert [r["name"] for r in results["checkpoints"]] == ["m0", "m1"]
    assert results["checkpoints"][1]["winrate"]["prompts"] == 4
    assert (run_dir / "evaluation" / "report.png").exists()
    assert "| Self-Rewarding M1 | 1 |" in evaluate.stdout
