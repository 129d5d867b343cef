"""The DPO training loop that runs inside each Ray Train worker, on a DeepSpeed engine.

One worker = one rank. Every rank:
  1. loads the starting model under ZeRO-3 partitioning (never whole on one rank),
  2. computes reference log-probs of its share of the pairs with that same starting model,
     before any update (the reference is the starting point, so no second model is kept),
  3. trains with the sigmoid DPO loss (chosen and rejected in one forward pass),
  4. measures the loss on its pairs again after training,
  5. joins the gather of the sharded weights; rank 0 writes a Hugging Face checkpoint
     (safetensors, config, tokenizer) and metrics.json into the output directory.
Imports of deepspeed and transformers stay inside the function: the driver never needs them.
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
class DPOJob:
    """Everything one DPO run needs; sent to every worker as a plain dict."""

    start_model: str
    pairs_path: str
    output_dir: str
    beta: float
    loss: str
    label_smoothing: float
    lr: float
    min_lr: float
    warmup_ratio: float
    epochs: int
    batch_size: int
    micro_batch_size: int
    max_length: int
    zero_stage: int
    grad_clip: float
    seed: int
    use_gpu: bool
    checkpoint_every: int = 0
    fail_once_at_step: int | None = None
    """Test hook: raise once at this optimizer step, to exercise restarts."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def deepspeed_config(job: DPOJob, world_size: int) -> dict[str, Any]:
    """The DeepSpeed config for one run: batch geometry, ZeRO stage, precision."""
    accumulation = job.batch_size // (job.micro_batch_size * world_size)
    config: dict[str, Any] = {
        "train_batch_size": job.batch_size,
        "train_micro_batch_size_per_gpu": job.micro_batch_size,
        "gradient_accumulation_steps": accumulation,
        "gradient_clipping": job.grad_clip,
        "zero_optimization": {
            "stage": job.zero_stage,
            "stage3_gather_16bit_weights_on_model_save": True,
        },
        "bf16": {"enabled": job.use_gpu},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if job.use_gpu:
        # DeepSpeed's fused AdamW on GPU; on CPU the client torch AdamW is passed instead,
        # since the fused and CPU-Adam kernels need a CUDA or compiled build.
        config["optimizer"] = {"type": "AdamW", "params": {"lr": job.lr, "weight_decay": 0.0}}
    return config


def train_dpo_worker(job_dict: dict[str, Any]) -> None:
    import deepspeed
    import pyarrow.parquet as pq
    import ray.train
    import torch
    import torch.distributed as dist
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.integrations import HfDeepSpeedConfig

    from temporal_ray.dpo import resume
    from temporal_ray.dpo.batches import collate, shard_indices, tokenize_pair
    from temporal_ray.dpo.loss import IGNORE_INDEX, dpo_loss, sequence_logps
    from temporal_ray.dpo.schedule import lr_factor
    from temporal_ray.storage import ensure_local, resolve, upload_dir

    job = DPOJob(**job_dict)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    torch.manual_seed(job.seed)
    deepspeed.init_distributed(dist_backend="nccl" if job.use_gpu else "gloo")

    start = ensure_local(job.start_model)
    tokenizer = AutoTokenizer.from_pretrained(start)
    fs, pairs_file = resolve(job.pairs_path)
    pairs = pq.read_table(pairs_file, filesystem=fs).to_pylist()
    examples = [tokenize_pair(tokenizer, p["prompt"], p["chosen"], p["rejected"], job.max_length)
                for p in pairs]

    per_rank_step = job.batch_size // world
    mine = shard_indices(len(examples), rank, world, per_rank_step)
    micro_batches = [mine[i: i + job.micro_batch_size]
                     for i in range(0, len(mine), job.micro_batch_size)]
    steps_per_epoch = len(mine) // per_rank_step
    total_steps = steps_per_epoch * job.epochs
    ds_config = deepspeed_config(job, world)

    # With ZeRO-3 this object makes from_pretrained build the model under deepspeed.zero.Init,
    # so each rank only ever holds its shard. It must stay alive while the model is built.
    hf_ds_config = HfDeepSpeedConfig(ds_config) if job.zero_stage == 3 else None  # noqa: F841
    dtype = torch.bfloat16 if job.use_gpu else torch.float32
    model = AutoModelForCausalLM.from_pretrained(start, dtype=dtype)
    optimizer = None
    if not job.use_gpu:
        optimizer = torch.optim.AdamW(model.parameters(), lr=job.lr, weight_decay=0.0)
    warmup = int(job.warmup_ratio * total_steps)

    def schedule(opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: lr_factor(step, total_steps, warmup, job.min_lr / job.lr))

    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=schedule,
                                      model_parameters=model.parameters(), config=ds_config)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def forward_logps(indices: list[int]) -> tuple[torch.Tensor, ...]:
        """Summed response log-probs and response token counts, chosen then rejected."""
        batch = collate([examples[i] for i in indices], pad_id)
        logits = engine(input_ids=batch.input_ids.to(device),
                        attention_mask=batch.attention_mask.to(device)).logits
        labels = batch.labels.to(device)
        logps = sequence_logps(logits.float(), labels)
        tokens = (labels[:, 1:] != IGNORE_INDEX).sum(-1)
        n = batch.num_pairs
        return logps[:n], logps[n:], tokens[:n], tokens[n:]

    def loss_of(indices: list[int], number: int):
        chosen, rejected, chosen_tokens, rejected_tokens = forward_logps(indices)
        out = dpo_loss(chosen, rejected, *reference[number], job.beta, job.loss,
                       job.label_smoothing, chosen_tokens, rejected_tokens)
        return out, chosen, rejected

    def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
        tensor = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return dict(zip(values, (tensor / world).tolist()))

    def evaluate() -> dict[str, float]:
        engine.eval()
        losses, margins, accuracies = [], [], []
        with torch.no_grad():
            for number, indices in enumerate(micro_batches):
                out, _, _ = loss_of(indices, number)
                losses.append(out.loss.item())
                margins.append(out.margins.mean().item())
                accuracies.append((out.margins > 0).float().mean().item())
        return mean_over_ranks({"loss": _mean(losses), "reward_margin": _mean(margins),
                                "reward_accuracy": _mean(accuracies)})

    # Reference log-probs: the starting model before any update is the DPO reference. A
    # restarted run takes them (and its weights and place in the data) from its checkpoint.
    started = time.time()
    restored = resume.restore(engine, rank)
    if restored is None:
        state = resume.LoopState()
        engine.eval()
        reference: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        with torch.no_grad():
            for number, indices in enumerate(micro_batches):
                reference[number] = tuple(t.detach() for t in forward_logps(indices)[:2])
        # history[0]: the loss before any update, policy == reference (log 2 for sigmoid).
        state.history.append({"step": 0, **evaluate()})
    else:
        state, reference = restored
        if rank == 0:
            _log(f"[dpo] resumed from the checkpoint of step {len(state.history) - 1}")
    before = state.history[0]

    window: list[dict[str, float]] = []
    while state.epoch < job.epochs:
        engine.train()
        order = list(range(len(micro_batches)))
        random.Random(job.seed + state.epoch).shuffle(order)
        while state.position < len(order):
            number = order[state.position]
            state.position += 1
            out, chosen, rejected = loss_of(micro_batches[number], number)
            engine.backward(out.loss)
            boundary = engine.is_gradient_accumulation_boundary()
            lr = float(engine.get_lr()[0])  # the rate this step applies
            engine.step()
            window.append({
                "loss": out.loss.item(),
                "reward_margin": out.margins.mean().item(),
                "reward_accuracy": (out.margins > 0).float().mean().item(),
                "chosen_logps": chosen.mean().item(),
                "rejected_logps": rejected.mean().item(),
            })
            if not boundary:
                continue
            step = mean_over_ranks({k: _mean([w[k] for w in window]) for k in window[0]})
            step.update(step=len(state.history), epoch=state.epoch,
                        grad_norm=float(engine.get_global_grad_norm() or 0.0), lr=lr)
            state.history.append(step)
            window = []
            if rank == 0:
                _log(f"[dpo] step {step['step']}/{total_steps} loss {step['loss']:.4f} "
                     f"margin {step['reward_margin']:+.4f} acc {step['reward_accuracy']:.2f} "
                     f"grad_norm {step['grad_norm']:.3f} lr {step['lr']:.2e}")
            if step["step"] == job.fail_once_at_step:
                _fail_once(job.output_dir)
            if job.checkpoint_every and step["step"] % job.checkpoint_every == 0:
                at_end = state.position == len(order)
                saved = resume.LoopState(state.epoch + at_end, 0 if at_end else state.position,
                                         state.history)
                resume.save(engine, saved, reference, rank, {"step": step["step"]})
        state.epoch, state.position = state.epoch + 1, 0
    history = state.history[1:]
    after = evaluate()

    state_dict = (engine._zero3_consolidated_16bit_state_dict() if job.zero_stage == 3
                  else engine.module.state_dict())
    if rank == 0:
        local_out = job.output_dir if "://" not in job.output_dir else tempfile.mkdtemp()
        os.makedirs(local_out, exist_ok=True)
        engine.module.save_pretrained(local_out, state_dict=state_dict, safe_serialization=True)
        tokenizer.save_pretrained(local_out)
        metrics = {
            "pairs": len(examples), "world_size": world, "optimizer_steps": len(history),
            "loss_before": before["loss"], "loss_after": after["loss"],
            "margin_after": after["reward_margin"], "accuracy_after": after["reward_accuracy"],
            "mean_grad_norm": _mean([h["grad_norm"] for h in history]),
            "train_loss": _mean([h["loss"] for h in history]),
            "train_reward_margin": _mean([h["reward_margin"] for h in history]),
            "train_reward_accuracy": _mean([h["reward_accuracy"] for h in history]),
            "chosen_logps": _mean([h["chosen_logps"] for h in history]),
            "rejected_logps": _mean([h["rejected_logps"] for h in history]),
            "seconds": round(time.time() - started, 2),
            "history": history,
        }
        with open(os.path.join(local_out, "metrics.json"), "w") as f:
            json.dump(metrics, f, indent=2)
        if local_out != job.output_dir:
            upload_dir(local_out, job.output_dir)
    dist.barrier()


def _fail_once(output_dir: str) -> None:
    """The test hook: raise the first time any rank gets here for this output directory."""
    os.makedirs(output_dir, exist_ok=True)
    marker = os.path.join(output_dir, ".fault_injected")
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return
    raise RuntimeError(f"injected fault (test hook) in {output_dir}")


def _log(message: str) -> None:
    # Straight to stdout: Ray Train's patched print() would log each line twice here.
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan
