"""Shared fixtures: a tiny model built on the spot and one local Ray cluster per session."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from temporal_ray.run.session import LOCAL_TRAIN_ENV

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    from temporal_ray.miniature.tiny_model import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-model")))


HUB_ID = "tiny-org/tiny-model"


@pytest.fixture(scope="session")
def hub_cache(tiny_model, tmp_path_factory) -> str:
    """A Hub cache holding the tiny model as HUB_ID, laid out the way the hub client writes one:
    models--tiny-org--tiny-model/blobs/<sha256>, snapshots/<commit>/<file> linking to
    ../../blobs/<sha256>, and refs/main holding the commit."""
    import hashlib

    cache = tmp_path_factory.mktemp("hub-cache")
    repo = cache / f"models--{HUB_ID.replace('/', '--')}"
    files = sorted(p for p in Path(tiny_model).iterdir() if p.is_file())
    hashes = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    commit = hashlib.sha1(json.dumps(hashes, sort_keys=True).encode()).hexdigest()
    (repo / "blobs").mkdir(parents=True)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    for path in files:
        (repo / "blobs" / hashes[path.name]).write_bytes(path.read_bytes())
        (repo / "snapshots" / commit / path.name).symlink_to(
            f"../../blobs/{hashes[path.name]}")
    (repo / "refs" / "main").write_text(commit)  # no newline: the client writes none
    return str(cache)


@pytest.fixture(scope="session")
def lora_checkpoint(tiny_model, tmp_path_factory) -> str:
    """A checkpoint in the layout a LoRA DPO stage writes (`adapter/` whose config names the
    tiny model as its base, the merged model beside it), with random nonzero adapter weights
    so that it computes something other than its base."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from temporal_ray.storage.checkpoints import ADAPTER_DIR
    from temporal_ray.training.export import merge_adapter

    out = tmp_path_factory.mktemp("lora-checkpoint")
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                      task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    model.peft_config["default"].base_model_name_or_path = tiny_model
    model.save_pretrained(str(out / ADAPTER_DIR))
    merge_adapter(tiny_model, str(out / ADAPTER_DIR), str(out))
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(str(out))
    return str(out)


@pytest.fixture
def engine_texts():
    """What the hf engine itself writes for a generate stage's requests (the stage's own
    `candidate_requests`, with their per-row seeds), by (prompt_id, sample_index): what a
    stage must give however its pool splits, shares or retries the work."""
    return _engine_texts


def _engine_texts(model: str, prompts: list[dict], role: str, generation) -> dict:
    import pandas as pd

    from temporal_ray.core.requests import candidate_requests
    from temporal_ray.engines.hf import HFEngine

    requests = pd.DataFrame([row for prompt in prompts for row in candidate_requests(
        prompt, role, generation.samples, generation.temperature, generation.top_p,
        generation.max_new_tokens, generation.seed)])
    return {(r.prompt_id, r.sample_index): r.generated_text
            for r in HFEngine(model)(requests).itertuples()}


@pytest.fixture
def assert_trained_checkpoint():
    """Checks that a DPO stage wrote a trained, loadable checkpoint that differs from its start."""
    return _assert_trained_checkpoint


def _weights(path: str) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(path) / "model.safetensors"))


def _assert_trained_checkpoint(model_dir: Path, start_model: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    before, after = _weights(start_model), _weights(str(model_dir))
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before), "DPO changed no weight"
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert metrics["optimizer_steps"] >= 2
    assert metrics["loss_before"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference
    assert metrics["loss_after"] < metrics["loss_before"]
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = tokenizer("What is two plus three?", return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > ids.shape[1]


# As start_ray's local cluster: Ray Train without a preemption watcher, a short health check.
RAY_ENV = {"env_vars": {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
                        **LOCAL_TRAIN_ENV}}


def start_local_ray() -> None:
    """A real local Ray cluster; 4 logical CPUs so 2 engine actors or 2 trainer workers fit.
    Started once and shared; started again after a test that used a multi-node cluster
    (tests/cluster/test_multinode.py). address="local": never join another process's cluster.
    Ray shuts it down when the session exits."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=4, include_dashboard=False, runtime_env=RAY_ENV)


@pytest.fixture
def ray_cluster():
    """The shared local Ray cluster (start_local_ray)."""
    start_local_ray()
    yield


@pytest.fixture(scope="session")
def ray_for_session_fixtures():
    """The same cluster, for a session-scoped fixture that runs work once for several tests
    (a test that goes on using Ray asks for ray_cluster too: the cluster may have been
    restarted in between)."""
    start_local_ray()


# ------------------------------------------------------------------ fault-injection table
# Tests marked `chaos` record what they injected and what survived; `make chaos` runs them
# and prints the table (the README keeps a copy).
CHAOS_ROWS: list[dict] = []


@pytest.fixture(scope="session")
def free_ports() -> Callable[[int], list[int]]:
    """A function giving `count` distinct local ports nothing listens on now (for the ports of
    a Ray head a test starts on its own)."""
    def ports(count: int) -> list[int]:
        sockets = [socket.socket() for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        found = [s.getsockname()[1] for s in sockets]
        for s in sockets:
            s.close()
        return found
    return ports


@pytest.fixture(scope="session")
def free_port(free_ports: Callable[[int], list[int]]) -> Callable[[], int]:
    """A function giving a local port nothing listens on now (for a server a test starts)."""
    return lambda: free_ports(1)[0]


@pytest.fixture
def chaos_record():
    def record(fault: str, injected: int, survived: bool, rows_lost: int) -> None:
        CHAOS_ROWS.append({"fault": fault, "injected": injected, "survived": survived,
                           "rows_lost": rows_lost})
    return record


def pytest_terminal_summary(terminalreporter):
    if not CHAOS_ROWS:
        return
    width = max(len(r["fault"]) for r in CHAOS_ROWS)
    terminalreporter.write_sep("-", "fault injection")
    terminalreporter.write_line(f"{'fault':<{width}}  injected  survived  rows lost")
    for r in CHAOS_ROWS:
        terminalreporter.write_line(f"{r['fault']:<{width}}  {r['injected']:>8}  "
                                    f"{'yes' if r['survived'] else 'no':>8}  {r['rows_lost']:>9}")
