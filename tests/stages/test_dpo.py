"""The DPO stage on two real Ray Train workers with DeepSpeed ZeRO-3 over gloo: a worker that
fails mid-run, and then rank 0 SIGKILLed mid-export, are each restarted from the last
checkpoint and the run ends exactly like one that never failed. That run also computes its
reference log-probs in larger batches, gathers each module on its own instead of whole blocks
(`zero3_whole_blocks`), and keeps optimizer states and parameters in CPU memory
(`offload_optimizer`, `offload_params`: DeepSpeed's CPU Adam, restored from the checkpoint
after the fault). None of these may change a number."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from temporal_ray.config import DPOConfig
from temporal_ray.stages.dpo import train_dpo
from temporal_ray.storage.files import write_rows
from temporal_ray.storage.progress import PROGRESS

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

PAIRS = [{"prompt": f"What is {i} plus {i}?", "chosen": f"It is {2 * i}.",
          "rejected": "I like trains and the sea."} for i in range(16)]
DPO = DPOConfig(lr=1e-3, min_lr=1e-4, warmup_ratio=0.0, batch_size=8, micro_batch_size=2,
                epochs=2, max_length=64, checkpoint_every=1, max_failures=1)


def weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_worker_failure_resumes_from_checkpoint(tiny_model, ray_cluster, tmp_path, chaos_record):
    write_rows(PAIRS, str(tmp_path / "pairs.parquet"))

    def train(name: str, fail_at: int | None, dpo: DPOConfig = DPO, kill: bool = False) -> dict:
        return train_dpo(str(tmp_path / "pairs.parquet"), tiny_model, str(tmp_path / name), dpo,
                         storage_path=str(tmp_path / "ray_train"), name=name,
                         fail_once_at_step=fail_at, kill_once_in_export=kill)

    # The clean run saves no checkpoints (nothing to resume; a checkpoint is seconds here).
    began = time.time()
    clean = train("clean", None, DPO.model_copy(update={"checkpoint_every": 0}))
    wall = time.time() - began
    # The faulted run also computes its reference log-probs 8 pairs a forward instead of 2,
    # gathers per module and offloads: the same numbers, so everything below must agree.
    # Two faults: an error at step 2, then rank 0 SIGKILLed once its export wrote the weights.
    with files_at_kill(tmp_path / "faulted") as left:
        faulted = train("faulted", fail_at=2, kill=True,
                        dpo=DPO.model_copy(update={"reference_micro_batch_size": 8,
                                                   "zero3_whole_blocks": False,
                                                   "offload_optimizer": True,
                                                   "offload_params": True,
                                                   "max_failures": 2}))

    assert (tmp_path / "faulted" / ".fault_injected").exists()  # the faults did happen
    # The killed export left weights without tokenizer or metrics.json (what the driver
    # reads when `fit` returns); the restarted group wrote it all again: the same files as
    # the clean run's, nothing stray.
    assert "model.safetensors" in left and not {"tokenizer.json", "metrics.json"} & left, left
    markers = {".fault_injected", ".killed_in_export"}
    assert set(os.listdir(tmp_path / "faulted")) == set(os.listdir(tmp_path / "clean")) | markers
    # Rank 0's progress record (storage/progress.py) is gone from the finished output.
    assert not any((tmp_path / run / PROGRESS).exists() for run in ("clean", "faulted"))
    expected_steps = len(PAIRS) // DPO.batch_size * DPO.epochs
    chaos_record("DPO worker fails at step 2", 1,
                 faulted["optimizer_steps"] == expected_steps, len(PAIRS) - faulted["pairs"])
    clean_w, faulted_w = weights(tmp_path / "clean"), weights(tmp_path / "faulted")
    chaos_record("DPO worker SIGKILL during model export", 1,
                 all(torch.allclose(clean_w[k], faulted_w[k], atol=1e-5) for k in clean_w),
                 len(PAIRS) - faulted["pairs"])
    assert clean["optimizer_steps"] == faulted["optimizer_steps"] == expected_steps
    assert [h["step"] for h in faulted["history"]] == list(range(1, expected_steps + 1))
    for a, b in zip(clean["history"], faulted["history"]):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        assert a["lr"] == pytest.approx(b["lr"])
    assert faulted["loss_after"] < faulted["loss_before"]
    for key in clean_w:
        assert torch.allclose(clean_w[key], faulted_w[key], atol=1e-5), key
    # The first optimizer step already trains: no step is wasted at lr 0.
    assert clean["history"][0]["lr"] == pytest.approx(DPO.lr)
    assert json.loads((tmp_path / "faulted" / "metrics.json").read_text())["world_size"] == 2
    # Tokens count the whole run, restarted or not: 2 epochs of policy forwards, one
    # precomputed reference pass (by micro-batch or 8 pairs a forward: the same pairs).
    for key in ("dpo_forward_tokens", "dpo_backward_tokens", "reference_forward_tokens"):
        assert clean[key] == faulted[key] > 0, key
    assert clean["dpo_forward_tokens"] == 2 * clean["reference_forward_tokens"]
    assert clean["dpo_backward_tokens"] < clean["reference_forward_tokens"]
    # The reference log-probs are stored beside the model, one file per rank, every pair once;
    # the restarted run trained against the same ones (from its checkpoint).
    from temporal_ray.storage.files import read_rows

    refs = {name: {r["pair_index"]: r for r in read_rows(
        str(tmp_path / name / "reference_logps"))} for name in ("clean", "faulted")}
    assert sorted(refs["clean"]) == list(range(len(PAIRS)))
    assert len(list((tmp_path / "clean" / "reference_logps").glob("rank_*.parquet"))) == 2
    for i, row in refs["clean"].items():
        assert row["chosen_logp"] < 0 and row["rejected_logp"] < 0
        # Other batch widths may round differently: a float32 ulp at |56| is 3.8e-6.
        assert row["chosen_logp"] == pytest.approx(refs["faulted"][i]["chosen_logp"], rel=1e-6)

    # Where the time went: Ray Train's start and stop around the workers' phases, which
    # together make up the call's wall time. The faulted run's last attempt (after the kill in
    # the export) resumed from a checkpoint instead of taking the reference pass: the last
    # step's, or the one before when Ray Train had not yet registered the last step's report
    # as the kill came (it then trains that step again; the weights above are the same).
    phases = clean["phases"]
    assert list(phases)[:6] == ["start_workers", "imports", "process_group", "data",
                                "model_load", "deepspeed_initialize"]
    assert list(phases)[-4:] == ["evaluate", "extras", "export", "stop_workers"]
    assert "begin" in phases and "checkpoints" not in phases
    assert all(seconds >= 0 for seconds in phases.values())
    assert sum(phases.values()) == pytest.approx(wall, abs=1.0)
    assert "resume" in faulted["phases"] and "begin" not in faulted["phases"]


@contextlib.contextmanager
def files_at_kill(output_dir: Path) -> Iterator[set[str]]:
    """The names in `output_dir` right after the export's kill marker appears (the restarted
    group takes seconds to start, then writes the export again)."""
    left: set[str] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if (output_dir / ".killed_in_export").exists():
                left.update(os.listdir(output_dir))
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield left
    finally:
        done.set()
        watcher.join()
