"""The SFT recipe: the steps that the shared loop (`training.loop`) runs on each Ray Train worker.

Every rank loads the base model sharded (ZeRO-3, LoRA if asked), takes its share of the examples
in length buckets, trains with cross-entropy on response tokens, checkpoints every
`checkpoint_every` steps, and joins the final gather; rank 0 writes the model and metrics.json.
The set-up, loop, checkpoints and export are the DPO recipe's (`training.loop`); only the data
and the loss differ. Imports of torch and transformers stay inside the methods.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from temporal_ray.config import SFTConfig
from temporal_ray.training.loop import (
    Outcome,
    Phases,
    Setup,
    TrainingLoop,
    join_group,
    mean,
    mean_over_ranks,
    prepare,
    sum_over_ranks,
)
from temporal_ray.training.resume import LoopState

if TYPE_CHECKING:
    import torch

    from temporal_ray.core.sft_data import SFTExample


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
    """The Ray Train loop of one SFT worker."""
    job = SFTJob(**job_dict)
    TrainingLoop(SFTRecipe(job), job.output_dir).run()


class SFTRecipe:
    """Cross-entropy on the response tokens of {prompt, response} rows."""

    kind = "sft"

    def __init__(self, job: SFTJob) -> None:
        self.job = job
        self.cfg = SFTConfig.model_validate(job.sft)
        self.examples: list[SFTExample] = []
        self.built: Setup  # by `setup`
        self.tokens: dict[str, int] = {}

    def setup(self, phases: Phases) -> Setup:
        import pyarrow.parquet as pq
        from transformers import AutoTokenizer

        from temporal_ray.core.sft_data import tokenize_example
        from temporal_ray.storage.files import ensure_local, resolve

        cfg = self.cfg
        place = join_group(cfg, phases)
        base = ensure_local(self.job.base_model)
        tokenizer = AutoTokenizer.from_pretrained(base)
        fs, data_file = resolve(self.job.data_path)
        rows = pq.read_table(data_file, filesystem=fs).to_pylist()
        self.examples = [tokenize_example(tokenizer, r["prompt"], r["response"], cfg.max_length,
                                          r.get("system") or "") for r in rows]
        self.built = prepare(cfg, place, tokenizer, [e.length for e in self.examples], base,
                             phases)
        self.tokens = sum_over_ranks(self.token_counts(), place)
        return self.built

    def token_counts(self) -> dict[str, int]:
        """This rank's training tokens over every epoch, as planned from its micro-batches:
        sft_forward_tokens, every prompt and response token (no padding); of those,
        sft_backward_tokens, the response tokens the loss reads."""
        from temporal_ray.core.batching import shard_tokens
        from temporal_ray.core.dpo_loss import IGNORE_INDEX

        sizes = [(e.length, sum(label != IGNORE_INDEX for label in e.labels[1:]))
                 for e in self.examples]
        forward, backward = shard_tokens(sizes, self.built.micro_batches, self.cfg.epochs)
        return {"sft_forward_tokens": forward, "sft_backward_tokens": backward}

    def loss(self, number: int) -> tuple[torch.Tensor, Any]:
        from temporal_ray.core.sft_data import collate_examples, response_loss

        device = self.built.place.device
        input_ids, mask, labels = collate_examples(
            [self.examples[i] for i in self.built.micro_batches[number]], self.built.pad_id)
        logits = self.built.engine(input_ids=input_ids.to(device),
                                   attention_mask=mask.to(device)).logits
        loss = response_loss(logits, labels.to(device))
        return loss, loss

    def measure(self, outputs: Any) -> dict[str, float]:
        return {"loss": outputs.item()}

    def micro_batch_tokens(self, number: int) -> int:
        return sum(self.examples[i].length for i in self.built.micro_batches[number])

    def evaluate(self) -> dict[str, float]:
        import torch

        self.built.engine.eval()
        with torch.no_grad():
            losses = [self.loss(number)[0].item()
                      for number in range(len(self.built.micro_batches))]
            return mean_over_ranks({"loss": mean(losses)}, self.built.place)

    def begin(self) -> dict[str, float]:
        return self.evaluate()

    def resume(self, state: LoopState, rank_state: dict) -> None:
        pass  # SFT keeps no state of its own beside the engine

    def rank_state(self) -> dict:
        return {}

    def history_entry(self, means: dict[str, float], step: int, epoch: int,
                      grad_norm: float, lr: float) -> dict[str, float]:
        return {"step": step, "epoch": epoch, **means, "lr": lr, "grad_norm": grad_norm}

    def step_line(self, entry: dict[str, float], total_steps: int) -> str:
        return (f"[sft] step {entry['step']}/{total_steps} loss {entry['loss']:.4f} "
                f"grad_norm {entry['grad_norm']:.3f} lr {entry['lr']:.2e}")

    def save_extras(self, output_dir: str) -> None:
        pass  # nothing beside the model

    def metrics(self, outcome: Outcome) -> dict[str, Any]:
        history = outcome.history
        return {
            "examples": len(self.examples), "world_size": self.built.place.world,
            "optimizer_steps": len(history),
            "response_tokens": sum(e.response_tokens for e in self.examples),
            **self.tokens,
            "loss_before": outcome.before["loss"], "loss_after": outcome.after["loss"],
            "train_loss": mean([h["loss"] for h in history]),
            "mean_grad_norm": mean([h["grad_norm"] for h in history]),
            "seconds": round(outcome.seconds(), 2), "history": history,
        }
