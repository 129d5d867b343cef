"""The DPO stage as a Ray Train job: pairs + starting model -> a new Hugging Face checkpoint.

In:  a Parquet file of pair rows {prompt, chosen, rejected, ...}, the starting model (which is
     also the reference model), the dpo config section.
Out: the output directory holds the trained model (safetensors, config, tokenizer; with LoRA also
     adapter/) and metrics.json (loss before/after, reward margin and accuracy, grad norm,
     per-step history).
The training loop itself lives in `training.loop` and `training.dpo_recipe`; this module only
fills in the job and launches it.
"""

from __future__ import annotations

from typing import Any

from temporal_ray.config import DPOConfig
from temporal_ray.training.dpo_recipe import DPOJob, train_dpo_worker
from temporal_ray.training.launch import check_batch_geometry, fit_on_workers


def train_dpo(pairs_path: str, start_model: str, output_dir: str, dpo: DPOConfig,
              storage_path: str, name: str,
              fail_once_at_step: int | None = None,
              kill_once_in_export: bool = False) -> dict[str, Any]:
    """Run DPO on Ray Train workers and return the metrics that rank 0 wrote.

    `name` under `storage_path` holds the run's checkpoints: a run with the same name resumes
    from its latest one, so the name must change when the pairs or the start model do.
    `fail_once_at_step` and `kill_once_in_export` are test hooks (training/loop.py).
    """
    check_batch_geometry(dpo, "dpo")
    job = DPOJob(start_model=start_model, pairs_path=pairs_path, output_dir=output_dir,
                 dpo=dpo.model_dump(mode="json"), fail_once_at_step=fail_once_at_step,
                 kill_once_in_export=kill_once_in_export)
    return fit_on_workers(train_dpo_worker, job.to_dict(), dpo, output_dir, storage_path, name)
