"""The DPO training loop that runs inside each Ray Train worker, on a DeepSpeed engine.

One worker = one rank. Every rank:
  1. loads the starting model under ZeRO-3 partitioning (never whole on one rank), with LoRA
     adapters if asked (`training.deepspeed_setup`; with lora.base 'initial', M0's weights and
     the start model's adapter, which training continues),
  2. computes reference log-probs of its share of the pairs with that same starting model,
     before any update (the reference is the starting point, so no second model is kept;
     `dpo.reference=resident` keeps one instead),
  3. trains with the configured DPO loss (chosen and rejected in one forward pass), writing a
     checkpoint every `checkpoint_every` steps (`training.resume`),
  4. measures the loss on its pairs again after training,
  5. writes its reference log-probs to reference_logps/rank_<r>.parquet in the output
     directory, joins the gather of the sharded weights; rank 0 writes a Hugging Face
     checkpoint (`training.export`) and metrics.json there.
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

REFERENCE_LOGPS = "reference_logps"


@dataclass
class DPOJob:
    """Everything one DPO run needs; sent to every worker as a plain dict."""

    start_model: str
    pairs_path: str
    output_dir: str
    dpo: dict[str, Any]
    """The `DPOConfig` section, dumped."""
    fail_once_at_step: int | None = None
    """Test hook: raise once at this optimizer step, to exercise restarts."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_dpo_worker(job_dict: dict[str, Any]) -> None:
    import deepspeed
    import pyarrow.parquet as pq
    import ray.train
    import torch
    import torch.distributed as dist
    from transformers import AutoTokenizer

    from temporal_ray.config import DPOConfig
    from temporal_ray.core.batching import (
        bucket_by_length,
        collate,
        collate_packed,
        shard_indices,
        tokenize_pair,
    )
    from temporal_ray.core.dpo_loss import (
        IGNORE_INDEX,
        dpo_loss,
        packed_sequence_logps,
        scored_window_start,
        sequence_logps,
    )
    from temporal_ray.storage.checkpoints import adapter_of
    from temporal_ray.storage.files import ensure_local, resolve, upload_dir, write_rows
    from temporal_ray.training import resume
    from temporal_ray.training.deepspeed_setup import (
        build_engine,
        build_frozen_engine,
        deepspeed_config,
        load_model,
    )
    from temporal_ray.training.export import save_trained

    job = DPOJob(**job_dict)
    cfg = DPOConfig.model_validate(job.dpo)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    torch.manual_seed(cfg.seed)
    deepspeed.init_distributed(dist_backend="nccl" if cfg.use_gpu else "gloo")

    start = ensure_local(job.start_model)
    tokenizer = AutoTokenizer.from_pretrained(start)
    # The weights to build: the start model, or with lora.base 'initial' the base it is an
    # adapter of, with that adapter loaded to go on training (the policy is the start model
    # either way).
    base_uri, adapter = job.start_model, None
    if cfg.lora.enabled and cfg.lora.base == "initial":
        found = adapter_of(job.start_model)
        if found is not None:
            base_uri, adapter = found[0], ensure_local(found[1])
    base = ensure_local(base_uri)
    fs, pairs_file = resolve(job.pairs_path)
    pairs = pq.read_table(pairs_file, filesystem=fs).to_pylist()
    examples = [tokenize_pair(tokenizer, p["prompt"], p["chosen"], p["rejected"], cfg.max_length)
                for p in pairs]

    pair_tokens = sum(len(e.chosen_ids) + len(e.rejected_ids) for e in examples)
    per_rank_step = cfg.batch_size // world
    mine = shard_indices(len(examples), rank, world, per_rank_step)
    # Pairs of similar length share a micro-batch, so little compute goes to padding.
    micro_batches = bucket_by_length(mine, [e.length for e in examples], cfg.micro_batch_size)
    steps_per_epoch = len(mine) // per_rank_step
    total_steps = steps_per_epoch * cfg.epochs
    ds_config = deepspeed_config(cfg, world)
    engine = build_engine(load_model(base, cfg, ds_config, adapter), cfg, ds_config,
                          total_steps)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def forward_logps(model: Any, indices: list[int]) -> tuple[torch.Tensor, ...]:
        """Summed response log-probs and response token counts, chosen then rejected."""
        n = len(indices)
        if cfg.packing:
            packed = collate_packed([examples[i] for i in indices])
            # No cache: transformers only reads packed position ids as separate sequences
            # when it builds no KV cache.
            logits = model(input_ids=packed.input_ids.to(device),
                           position_ids=packed.position_ids.to(device), use_cache=False).logits
            logps, tokens = packed_sequence_logps(logits.float(), packed.labels.to(device),
                                                  packed.segment_ids.to(device), 2 * n)
            return logps[:n], logps[n:], tokens[:n], tokens[n:]
        batch = collate([examples[i] for i in indices], pad_id)
        labels = batch.labels.to(device)
        # Logits only from where the responses begin: the prompt positions before it would
        # each cost a vocabulary-sized row that the loss never reads.
        start = scored_window_start(labels)
        logits = model(input_ids=batch.input_ids.to(device),
                       attention_mask=batch.attention_mask.to(device),
                       logits_to_keep=labels.shape[1] - start).logits
        logps = sequence_logps(logits.float(), labels[:, start:])
        tokens = (labels[:, 1:] != IGNORE_INDEX).sum(-1)
        return logps[:n], logps[n:], tokens[:n], tokens[n:]

    # The reference is the starting model. Precomputed: its log-probs, in one pass before any
    # update. Resident: scored batch by batch by a frozen copy (with LoRA: the adapter off).
    reference: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    frozen_reference = None
    if cfg.reference == "resident" and not cfg.lora.enabled:
        frozen_reference = build_frozen_engine(start, cfg, world)

    def reference_logps(number: int) -> tuple[torch.Tensor, torch.Tensor]:
        if cfg.reference == "precomputed":
            return reference[number]
        with torch.no_grad():
            if frozen_reference is not None:
                return forward_logps(frozen_reference, micro_batches[number])[:2]
            with engine.module.disable_adapter():
                return forward_logps(engine, micro_batches[number])[:2]

    def loss_of(indices: list[int], number: int):
        chosen, rejected, chosen_tokens, rejected_tokens = forward_logps(engine, indices)
        out = dpo_loss(chosen, rejected, *reference_logps(number), cfg.beta, cfg.loss,
                       cfg.label_smoothing, chosen_tokens, rejected_tokens)
        return out, chosen, rejected

    def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
        tensor = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return dict(zip(values, (tensor / world).tolist()))

    def summarise(outputs: list) -> dict[str, float]:
        """Loss, reward margin and accuracy over this rank's micro-batches, averaged over ranks."""
        return mean_over_ranks({
            "loss": _mean([out.loss.item() for out in outputs]),
            "reward_margin": _mean([out.margins.mean().item() for out in outputs]),
            "reward_accuracy": _mean([(out.margins > 0).float().mean().item()
                                      for out in outputs])})

    def evaluate() -> dict[str, float]:
        engine.eval()
        with torch.no_grad():
            return summarise([loss_of(indices, number)[0]
                              for number, indices in enumerate(micro_batches)])

    def at_reference() -> dict[str, float]:
        """What `evaluate` gives while the policy still equals the reference: every
        log-ratio 0 (token counts then cancel, so ones stand in for them)."""
        return summarise([
            dpo_loss(chosen, rejected, chosen, rejected, cfg.beta, cfg.loss,
                     cfg.label_smoothing, torch.ones_like(chosen), torch.ones_like(chosen))
            for chosen, rejected in reference.values()])

    # A restarted run takes its weights, place in the data and reference log-probs from its
    # checkpoint.
    started = time.time()
    restored = resume.restore(engine, rank, frozen_base=cfg.lora.enabled)
    if restored is None:
        state = resume.LoopState()
        engine.eval()
        if cfg.reference == "precomputed":
            # Inference only: batches of reference_micro_batch_size pairs (ZeRO-3 gathers the
            # weights once per forward, so fewer, larger forwards cost less), then regrouped
            # into the training micro-batches.
            with torch.no_grad():
                if cfg.reference_micro_batch_size is None:
                    for number, indices in enumerate(micro_batches):
                        reference[number] = tuple(
                            t.detach() for t in forward_logps(engine, indices)[:2])
                else:
                    per_pair: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
                    for indices in bucket_by_length(sorted(set(mine)),
                                                    [e.length for e in examples],
                                                    cfg.reference_micro_batch_size):
                        chosen, rejected = forward_logps(engine, indices)[:2]
                        per_pair.update((i, (chosen[j], rejected[j]))
                                        for j, i in enumerate(indices))
                    for number, indices in enumerate(micro_batches):
                        reference[number] = (torch.stack([per_pair[i][0] for i in indices]),
                                             torch.stack([per_pair[i][1] for i in indices]))
        # history[0]: the loss before any update. The policy is the reference then, so with
        # precomputed reference log-probs it follows from them without another forward pass.
        before = evaluate() if cfg.reference == "resident" else at_reference()
        state.history.append({"step": 0, **before})
    else:
        state, reference = restored[0], restored[1]
        if rank == 0:
            _log(f"[dpo] resumed from the checkpoint of step {len(state.history) - 1}")
    before = state.history[0]

    window: list[dict[str, float]] = []
    train_started = time.time()  # after the reference pass: throughput counts training only
    while state.epoch < cfg.epochs:
        engine.train()
        order = list(range(len(micro_batches)))
        random.Random(cfg.seed + state.epoch).shuffle(order)
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
            if cfg.checkpoint_every and step["step"] % cfg.checkpoint_every == 0:
                at_end = state.position == len(order)
                saved = resume.LoopState(state.epoch + at_end, 0 if at_end else state.position,
                                         state.history)
                resume.save(engine, saved, reference, rank, {"step": step["step"]},
                            frozen_base=cfg.lora.enabled)
        state.epoch, state.position = state.epoch + 1, 0
    history = state.history[1:]
    train_seconds = time.time() - train_started
    after = evaluate()

    if cfg.reference == "precomputed":
        # Beside the model: the reference log-probs the whole run trained against, one file
        # per rank (each holds its own pairs), for inspection.
        write_rows([{"pair_index": int(i), "chosen_logp": float(chosen[j]),
                     "rejected_logp": float(rejected[j])}
                    for number, indices in enumerate(micro_batches)
                    for (chosen, rejected) in [reference[number]]
                    for j, i in enumerate(indices)],
                   f"{job.output_dir}/{REFERENCE_LOGPS}/rank_{rank:03d}.parquet")
    local_out = job.output_dir if "://" not in job.output_dir else tempfile.mkdtemp()
    save_trained(engine, tokenizer, local_out, base, cfg.zero_stage, cfg.lora.enabled, rank,
                 base_uri=base_uri)
    if rank == 0:
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
            # Prompt + response tokens of chosen and rejected over all epochs, per second of
            # the training loop (a resumed run counts from its restart).
            "train_tokens": pair_tokens * cfg.epochs,
            "reference_seconds": round(train_started - started, 3),
            "train_seconds": round(train_seconds, 3),
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
