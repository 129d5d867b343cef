"""The DPO stage as a Ray Train job: pairs + starting model -> a new Hugging Face checkpoint.

In:  a Parquet file of pair rows {prompt, chosen, rejected, ...}, the starting model (which is
     also the reference model), the dpo config section.
Out: the output directory holds the trained model (safetensors, config, tokenizer) and
     metrics.json (loss before/after, reward margin and accuracy, grad norm, per-step history).
The training loop itself lives in `worker.py`; this module only sizes and launches the workers.
"""

from __future__ import annotations

import json
from typing import Any

from temporal_ray.config import DPOConfig
from temporal_ray.dpo.worker import DPOJob, train_dpo_worker
from temporal_ray.storage import resolve


def check_batch_geometry(dpo: DPOConfig) -> None:
    """Refuse a batch size that the workers and micro-batches cannot split evenly."""
    per_step = dpo.micro_batch_size * dpo.workers
    if dpo.batch_size % per_step:
        raise ValueError(
            f"dpo.batch_size={dpo.batch_size} must be a multiple of dpo.micro_batch_size x "
            f"dpo.workers = {dpo.micro_batch_size} x {dpo.workers} = {per_step}")


def train_dpo(pairs_path: str, start_model: str, output_dir: str, dpo: DPOConfig,
              storage_path: str, name: str,
              fail_once_at_step: int | None = None) -> dict[str, Any]:
    """Run DPO on Ray Train workers and return the metrics that rank 0 wrote.

    `name` under `storage_path` holds the run's checkpoints: a run with the same name resumes
    from its latest one, so the name must change when the pairs or the start model do.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    check_batch_geometry(dpo)
    job = DPOJob(
        start_model=start_model, pairs_path=pairs_path, output_dir=output_dir,
        beta=dpo.beta, loss=dpo.loss, label_smoothing=dpo.label_smoothing,
        lr=dpo.lr, min_lr=dpo.min_lr, warmup_ratio=dpo.warmup_ratio,
        epochs=dpo.epochs, batch_size=dpo.batch_size, micro_batch_size=dpo.micro_batch_size,
        max_length=dpo.max_length, zero_stage=dpo.zero_stage, grad_clip=dpo.grad_clip,
        seed=dpo.seed, use_gpu=dpo.use_gpu, checkpoint_every=dpo.checkpoint_every,
        fail_once_at_step=fail_once_at_step,
    )
    resources = {"CPU": dpo.cpus_per_worker}
    if dpo.use_gpu:
        resources["GPU"] = 1
    trainer = TorchTrainer(
        train_loop_per_worker=train_dpo_worker,
        train_loop_config=job.to_dict(),
        torch_config=TorchConfig(backend="nccl" if dpo.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=dpo.workers, use_gpu=dpo.use_gpu,
                                     resources_per_worker=resources),
        run_config=RunConfig(
            name=name, storage_path=storage_path,
            failure_config=FailureConfig(max_failures=dpo.max_failures),
            # Only the latest checkpoint is needed to resume; optimizer states are large.
            checkpoint_config=CheckpointConfig(num_to_keep=1)),
    )
    trainer.fit()
    # Train V2 returns no metrics without a reported checkpoint: rank 0 wrote them beside
    # the model instead.
    fs, path = resolve(f"{output_dir}/metrics.json")
    with fs.open_input_stream(path) as f:
        return json.loads(f.read())
