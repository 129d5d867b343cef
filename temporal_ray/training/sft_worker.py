"""The SFT training loop that runs inside each Ray Train worker, on a DeepSpeed engine.

One worker = one rank. Every rank loads the base model sharded (ZeRO-3, LoRA if asked), takes
its share of the examples in length buckets, trains with cross-entropy on response tokens,
checkpoints every `checkpoint_every` steps, and joins the final gather; rank 0 writes the model
and metrics.json. The same set-up, checkpoint and export code as the DPO loop
(`temporal_ray.training`); only the loss differs.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class SFTJob:
    """Everything one SFT run needs; sent to every worker as a plain dict."""

    base_model: str
    data_path: str
    """Parquet rows {prompt, response}, checked by the driver."""
    output_dir: str
    sft: dict[str, Any]
    """The `SFTConfig` section, dumped."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_sft_worker(job_dict: dict[str, Any]) -> None:
    import deepspeed
    import pyarrow.parquet as pq
    import ray.train
    import torch
    import torch.distributed as dist
    from transformers import AutoTokenizer

    from temporal_ray.config import SFTConfig
    from temporal_ray.core.batching import bucket_by_length, shard_indices
    from temporal_ray.core.sft_data import collate_examples, response_loss, tokenize_example
    from temporal_ray.storage.files import ensure_local, resolve, upload_dir
    from temporal_ray.training import resume
    from temporal_ray.training.deepspeed_setup import build_engine, deepspeed_config, load_model
    from temporal_ray.training.export import save_trained

    job = SFTJob(**job_dict)
    cfg = SFTConfig.model_validate(job.sft)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    torch.manual_seed(cfg.seed)
    deepspeed.init_distributed(dist_backend="nccl" if cfg.use_gpu else "gloo")

    base = ensure_local(job.base_model)
    tokenizer = AutoTokenizer.from_pretrained(base)
    fs, data_file = resolve(job.data_path)
    rows = pq.read_table(data_file, filesystem=fs).to_pylist()
    examples = [tokenize_example(tokenizer, r["prompt"], r["response"], cfg.max_length)
                for r in rows]

    per_rank_step = cfg.batch_size // world
    mine = shard_indices(len(examples), rank, world, per_rank_step)
    micro_batches = bucket_by_length(mine, [e.length for e in examples], cfg.micro_batch_size)
    total_steps = len(mine) // per_rank_step * cfg.epochs
    ds_config = deepspeed_config(cfg, world)
    engine = build_engine(load_model(base, cfg, ds_config), cfg, ds_config, total_steps)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def loss_of(indices: list[int]) -> torch.Tensor:
        input_ids, mask, labels = collate_examples([examples[i] for i in indices], pad_id)
        logits = engine(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
        return response_loss(logits, labels.to(device))

    def mean_over_ranks(value: float) -> float:
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.item() / world

    def evaluate() -> float:
        engine.eval()
        with torch.no_grad():
            return mean_over_ranks(_mean([loss_of(ix).item() for ix in micro_batches]))

    started = time.time()
    restored = resume.restore(engine, rank, frozen_base=cfg.lora.enabled)
    state = restored[0] if restored else resume.LoopState(history=[{"step": 0,
                                                                    "loss": evaluate()}])
    window: list[float] = []
    while state.epoch < cfg.epochs:
        engine.train()
        order = list(range(len(micro_batches)))
        random.Random(cfg.seed + state.epoch).shuffle(order)
        while state.position < len(order):
            loss = loss_of(micro_batches[order[state.position]])
            state.position += 1
            engine.backward(loss)
            boundary = engine.is_gradient_accumulation_boundary()
            lr = float(engine.get_lr()[0])
            engine.step()
            window.append(loss.item())
            if not boundary:
                continue
            step = {"step": len(state.history), "epoch": state.epoch,
                    "loss": mean_over_ranks(_mean(window)), "lr": lr,
                    "grad_norm": float(engine.get_global_grad_norm() or 0.0)}
            state.history.append(step)
            window = []
            if rank == 0:
                _log(f"[sft] step {step['step']}/{total_steps} loss {step['loss']:.4f} "
                     f"grad_norm {step['grad_norm']:.3f} lr {lr:.2e}")
            if cfg.checkpoint_every and step["step"] % cfg.checkpoint_every == 0:
                at_end = state.position == len(order)
                saved = resume.LoopState(state.epoch + at_end, 0 if at_end else state.position,
                                         state.history)
                resume.save(engine, saved, {}, rank, {"step": step["step"]},
                            frozen_base=cfg.lora.enabled)
        state.epoch, state.position = state.epoch + 1, 0
    history = state.history[1:]
    loss_after = evaluate()

    local_out = job.output_dir if "://" not in job.output_dir else tempfile.mkdtemp()
    save_trained(engine, tokenizer, local_out, base, cfg.zero_stage, cfg.lora.enabled, rank)
    if rank == 0:
        metrics = {
            "examples": len(examples), "world_size": world, "optimizer_steps": len(history),
            "response_tokens": sum(e.response_tokens for e in examples),
            "loss_before": state.history[0]["loss"], "loss_after": loss_after,
            "train_loss": _mean([h["loss"] for h in history]),
            "mean_grad_norm": _mean([h["grad_norm"] for h in history]),
            "seconds": round(time.time() - started, 2), "history": history,
        }
        with open(os.path.join(local_out, "metrics.json"), "w") as f:
            json.dump(metrics, f, indent=2)
        if local_out != job.output_dir:
            upload_dir(local_out, job.output_dir)
    dist.barrier()


def _log(message: str) -> None:
    # Straight to stdout: Ray Train's patched print() would log each line twice here.
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan
