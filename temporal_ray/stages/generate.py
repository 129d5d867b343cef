"""Stage: generate candidates. Prompts + the models of one or more roles -> K sampled
responses per prompt and role.

In:  Parquet prompt rows {prompt_id, prompt}; per role the model that plays it.
Out: Parquet candidate rows {prompt_id, prompt, role, sample_index, response, prompt_tokens,
     response_tokens}, one per (prompt, role, sample).
Ray Data reads the prompts, explodes them into per-sample requests, runs them through one
engine pool and writes the candidates; it does not know which method asked for them. Several
roles share a pass only when one pool serves all their models (LoRA on one base).
"""

from __future__ import annotations

from temporal_ray.config import EngineConfig, GenerationConfig
from temporal_ray.core.requests import candidate_requests, to_candidate
from temporal_ray.engines.pool import run_models_pool
from temporal_ray.storage.files import count_rows, read_dataset


def generate_candidates(prompts_path: str, models: dict[str, str],
                        generation: GenerationConfig, engine: EngineConfig, out_dir: str,
                        lora_rank: int | None = None) -> None:
    """`models`: role -> model directory. `lora_rank`: the models are one base and LoRA
    checkpoints of it, served by one pool (lora.base 'initial')."""
    prompts = read_dataset(prompts_path)
    per_role = [prompts.flat_map(candidate_requests, fn_kwargs={
        "role": role, "samples": generation.samples,
        "temperature": generation.temperature, "top_p": generation.top_p,
        "max_tokens": generation.max_new_tokens, "seed": generation.seed,
    }) for role in models]
    requests = per_role[0].union(*per_role[1:]) if len(per_role) > 1 else per_role[0]
    rows = count_rows(prompts_path) * generation.samples * len(models)
    run_models_pool(requests, models, "role", engine, lora_rank, rows) \
        .map(to_candidate).write_parquet(out_dir)

