"""The DPO recipe: the steps that the shared loop (`training.loop`) runs on each Ray Train worker.

Every rank:
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
Imports of deepspeed, torch and transformers stay inside the methods: the driver never needs
them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from temporal_ray.config import DPOConfig
from temporal_ray.training.loop import (
    Outcome,
    Phases,
    Setup,
    TrainingLoop,
    join_group,
    log,
    mean,
    mean_over_ranks,
    prepare,
    sum_over_ranks,
)
from temporal_ray.training.resume import LoopState

if TYPE_CHECKING:
    import torch

    from temporal_ray.core.batching import TokenizedPair

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
    kill_once_in_export: bool = False
    """Test hook: rank 0 SIGKILLs itself once mid-export (weights written, tokenizer not)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_dpo_worker(job_dict: dict[str, Any]) -> None:
    """The Ray Train loop of one DPO worker."""
    job = DPOJob(**job_dict)
    TrainingLoop(DPORecipe(job), job.output_dir, job.fail_once_at_step,
                 job.kill_once_in_export).run()


class DPORecipe:
    """DPO against the starting model, its log-probs precomputed or scored as it goes."""

    kind = "dpo"

    def __init__(self, job: DPOJob) -> None:
        self.job = job
        self.cfg = DPOConfig.model_validate(job.dpo)
        self.examples: list[TokenizedPair] = []
        self.built: Setup  # by `setup`
        # Precomputed: micro-batch number -> the reference's chosen and rejected log-probs.
        self.reference: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        # Resident without LoRA: a frozen copy of the starting model.
        self.frozen_reference: Any = None
        self.tokens: dict[str, int] = {}

    def setup(self, phases: Phases) -> Setup:
        import pyarrow.parquet as pq
        from transformers import AutoTokenizer

        from temporal_ray.core.batching import tokenize_pair
        from temporal_ray.storage.checkpoints import adapter_of
        from temporal_ray.storage.files import ensure_local, resolve
        from temporal_ray.training.deepspeed_setup import build_frozen_engine

        job, cfg = self.job, self.cfg
        place = join_group(cfg, phases)
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
        self.examples = [tokenize_pair(tokenizer, p["prompt"], p["chosen"], p["rejected"],
                                       cfg.max_length, p.get("system") or "") for p in pairs]
        self.built = prepare(cfg, place, tokenizer, [e.length for e in self.examples], base,
                             phases, adapter, base_uri)
        # The reference is the starting model. Precomputed: its log-probs, in one pass before
        # any update. Resident: scored batch by batch by a frozen copy (with LoRA: the adapter
        # off).
        if cfg.reference == "resident" and not cfg.lora.enabled:
            self.frozen_reference = build_frozen_engine(start, cfg, place.world)
        self.tokens = sum_over_ranks(self.token_counts(), place)
        return self.built

    def token_counts(self) -> dict[str, int]:
        """This rank's share of the run's compute in tokens, as planned from its micro-batches
        (a resumed run counts the whole run once; the loss measured before and after training
        is not counted):
        - dpo_forward_tokens: the policy's training forward passes, every epoch: each prompt
          and response token of chosen and rejected (padding not counted);
        - dpo_backward_tokens: of those, the response tokens the loss sums log-probs of, whose
          gradients the backward pass carries (it runs back through the prompt tokens too,
          at the cost of about twice the forward tokens);
        - reference_forward_tokens: the reference's forward passes (precomputed: one pass
          over the rank's pairs; resident: one per training micro-batch, every epoch)."""
        from temporal_ray.core.batching import pair_tokens, shard_tokens

        cfg, built = self.cfg, self.built
        sizes = [pair_tokens(e) for e in self.examples]
        forward, backward = shard_tokens(sizes, built.micro_batches, cfg.epochs)
        if cfg.reference == "resident":
            reference = forward
        elif cfg.reference_micro_batch_size is None:
            reference = shard_tokens(sizes, built.micro_batches)[0]
        else:  # `reference_pass` scores each of the rank's pairs once
            reference = shard_tokens(sizes, [sorted(set(built.mine))])[0]
        return {"dpo_forward_tokens": forward, "dpo_backward_tokens": backward,
                "reference_forward_tokens": reference}

    def forward_logps(self, model: Any, indices: list[int]) -> tuple[torch.Tensor, ...]:
        """Summed response log-probs and response token counts, chosen then rejected."""
        from temporal_ray.core.batching import collate, collate_packed
        from temporal_ray.core.dpo_loss import (
            IGNORE_INDEX,
            packed_sequence_logps,
            scored_window_start,
            sequence_logps,
        )

        device, n = self.built.place.device, len(indices)
        if self.cfg.packing:
            packed = collate_packed([self.examples[i] for i in indices])
            # No cache: transformers only reads packed position ids as separate sequences
            # when it builds no KV cache.
            logits = model(input_ids=packed.input_ids.to(device),
                           position_ids=packed.position_ids.to(device), use_cache=False).logits
            logps, tokens = packed_sequence_logps(logits.float(), packed.labels.to(device),
                                                  packed.segment_ids.to(device), 2 * n)
            return logps[:n], logps[n:], tokens[:n], tokens[n:]
        batch = collate([self.examples[i] for i in indices], self.built.pad_id)
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

    def begin(self) -> dict[str, float]:
        self.built.engine.eval()
        if self.cfg.reference == "precomputed":
            self.reference_pass()
        # history[0]: the loss before any update. The policy is the reference then, so with
        # precomputed reference log-probs it follows from them without another forward pass.
        return self.evaluate() if self.cfg.reference == "resident" else self.at_reference()

    def reference_pass(self) -> None:
        """The reference log-probs of this rank's pairs, by training micro-batch. Inference
        only: batches of reference_micro_batch_size pairs (ZeRO-3 gathers the weights once per
        forward, so fewer, larger forwards cost less), then regrouped into the micro-batches."""
        import torch

        from temporal_ray.core.batching import bucket_by_length

        engine, micro_batches = self.built.engine, self.built.micro_batches
        with torch.no_grad():
            if self.cfg.reference_micro_batch_size is None:
                for number, indices in enumerate(micro_batches):
                    self.reference[number] = tuple(
                        t.detach() for t in self.forward_logps(engine, indices)[:2])
                return
            per_pair: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
            for indices in bucket_by_length(sorted(set(self.built.mine)),
                                            [e.length for e in self.examples],
                                            self.cfg.reference_micro_batch_size):
                chosen, rejected = self.forward_logps(engine, indices)[:2]
                per_pair.update((i, (chosen[j], rejected[j])) for j, i in enumerate(indices))
            for number, indices in enumerate(micro_batches):
                self.reference[number] = (torch.stack([per_pair[i][0] for i in indices]),
                                          torch.stack([per_pair[i][1] for i in indices]))

    def reference_logps(self, number: int) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        if self.cfg.reference == "precomputed":
            return self.reference[number]
        indices = self.built.micro_batches[number]
        with torch.no_grad():
            if self.frozen_reference is not None:
                return self.forward_logps(self.frozen_reference, indices)[:2]
            with self.built.engine.module.disable_adapter():
                return self.forward_logps(self.built.engine, indices)[:2]

    def score(self, number: int) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """The DPO loss of micro-batch `number`, and the policy's log-probs."""
        from temporal_ray.core.dpo_loss import dpo_loss

        cfg = self.cfg
        chosen, rejected, chosen_tokens, rejected_tokens = self.forward_logps(
            self.built.engine, self.built.micro_batches[number])
        out = dpo_loss(chosen, rejected, *self.reference_logps(number), cfg.beta, cfg.loss,
                       cfg.label_smoothing, chosen_tokens, rejected_tokens)
        return out, chosen, rejected

    def loss(self, number: int) -> tuple[torch.Tensor, Any]:
        outputs = self.score(number)
        return outputs[0].loss, outputs

    def measure(self, outputs: Any) -> dict[str, float]:
        out, chosen, rejected = outputs
        return {
            "loss": out.loss.item(),
            "reward_margin": out.margins.mean().item(),
            "reward_accuracy": (out.margins > 0).float().mean().item(),
            "chosen_logps": chosen.mean().item(),
            "rejected_logps": rejected.mean().item(),
        }

    def micro_batch_tokens(self, number: int) -> int:
        from temporal_ray.core.batching import pair_tokens

        return sum(pair_tokens(self.examples[i])[0] for i in self.built.micro_batches[number])

    def summarise(self, outputs: list) -> dict[str, float]:
        """Loss, reward margin and accuracy over this rank's micro-batches, averaged over ranks."""
        return mean_over_ranks({
            "loss": mean([out.loss.item() for out in outputs]),
            "reward_margin": mean([out.margins.mean().item() for out in outputs]),
            "reward_accuracy": mean([(out.margins > 0).float().mean().item()
                                     for out in outputs])}, self.built.place)

    def evaluate(self) -> dict[str, float]:
        import torch

        self.built.engine.eval()
        with torch.no_grad():
            return self.summarise([self.score(number)[0]
                                   for number in range(len(self.built.micro_batches))])

    def at_reference(self) -> dict[str, float]:
        """What `evaluate` gives while the policy still equals the reference: every
        log-ratio 0 (token counts then cancel, so ones stand in for them)."""
        import torch

        from temporal_ray.core.dpo_loss import dpo_loss

        cfg = self.cfg
        return self.summarise([
            dpo_loss(chosen, rejected, chosen, rejected, cfg.beta, cfg.loss,
                     cfg.label_smoothing, torch.ones_like(chosen), torch.ones_like(chosen))
            for chosen, rejected in self.reference.values()])

    def resume(self, state: LoopState, rank_state: dict) -> None:
        self.reference = rank_state
        if self.built.place.rank == 0:
            log(f"[dpo] resumed from the checkpoint of step {len(state.history) - 1}")

    def rank_state(self) -> dict:
        return self.reference

    def history_entry(self, means: dict[str, float], step: int, epoch: int,
                      grad_norm: float, lr: float) -> dict[str, float]:
        return {**means, "step": step, "epoch": epoch, "grad_norm": grad_norm, "lr": lr}

    def step_line(self, entry: dict[str, float], total_steps: int) -> str:
        return (f"[dpo] step {entry['step']}/{total_steps} loss {entry['loss']:.4f} "
                f"margin {entry['reward_margin']:+.4f} acc {entry['reward_accuracy']:.2f} "
                f"grad_norm {entry['grad_norm']:.3f} lr {entry['lr']:.2e}")

    def save_extras(self, output_dir: str) -> None:
        """Beside the model: the reference log-probs the whole run trained against, one file
        per rank (each holds its own pairs), for inspection."""
        from temporal_ray.storage.files import write_rows

        if self.cfg.reference != "precomputed":
            return
        write_rows([{"pair_index": int(i), "chosen_logp": float(chosen[j]),
                     "rejected_logp": float(rejected[j])}
                    for number, indices in enumerate(self.built.micro_batches)
                    for (chosen, rejected) in [self.reference[number]]
                    for j, i in enumerate(indices)],
                   f"{output_dir}/{REFERENCE_LOGPS}/rank_{self.built.place.rank:03d}.parquet")

    def metrics(self, outcome: Outcome) -> dict[str, Any]:
        history, before, after = outcome.history, outcome.before, outcome.after
        epoch_tokens = sum(len(e.chosen_ids) + len(e.rejected_ids) for e in self.examples)
        return {
            "pairs": len(self.examples), "world_size": self.built.place.world,
            "optimizer_steps": len(history),
            "loss_before": before["loss"], "loss_after": after["loss"],
            "margin_after": after["reward_margin"], "accuracy_after": after["reward_accuracy"],
            "mean_grad_norm": mean([h["grad_norm"] for h in history]),
            "train_loss": mean([h["loss"] for h in history]),
            "train_reward_margin": mean([h["reward_margin"] for h in history]),
            "train_reward_accuracy": mean([h["reward_accuracy"] for h in history]),
            "chosen_logps": mean([h["chosen_logps"] for h in history]),
            "rejected_logps": mean([h["rejected_logps"] for h in history]),
            "seconds": round(outcome.seconds(), 2),
            # Prompt + response tokens of chosen and rejected over all epochs, per second of
            # the training loop (a resumed run counts from its restart).
            "train_tokens": epoch_tokens * self.cfg.epochs,
            **self.tokens,
            "reference_seconds": round(outcome.reference_seconds, 3),
            "train_seconds": round(outcome.train_seconds, 3),
            "history": history,
        }
