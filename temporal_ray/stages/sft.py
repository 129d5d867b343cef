"""The SFT stage as a Ray Train job: examples + base model -> M0, a Hugging Face checkpoint.

In:  a Parquet file of rows {prompt, response}, the base model, the sft config section.
Out: the output directory holds the model (safetensors, config, tokenizer; with LoRA also
     adapter/) and metrics.json (response-token loss before/after, per-step history).
"""

from __future__ import annotations

from typing import Any

from temporal_ray.config import SFTConfig
from temporal_ray.training.launch import check_batch_geometry, fit_on_workers
from temporal_ray.training.sft_recipe import SFTJob, train_sft_worker


def train_sft(data_path: str, base_model: str, output_dir: str, sft: SFTConfig,
              storage_path: str, name: str) -> dict[str, Any]:
    """Run SFT on Ray Train workers and return the metrics that rank 0 wrote."""
    check_batch_geometry(sft, "sft")
    job = SFTJob(base_model=base_model, data_path=data_path, output_dir=output_dir,
                 sft=sft.model_dump(mode="json"))
    return fit_on_workers(train_sft_worker, job.to_dict(), sft, output_dir, storage_path, name)
