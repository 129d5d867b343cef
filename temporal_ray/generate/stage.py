"""Stage: generate candidates. Prompts + one model (a role) -> K sampled responses per prompt.

In:  Parquet prompt rows {prompt_id, prompt}.
Out: Parquet candidate rows {prompt_id, prompt, role, sample_index, response, prompt_tokens,
     response_tokens}, one per (prompt, sample).
Ray Data reads the prompts, explodes them into per-sample requests, runs them through the
model's engine pool and writes the candidates; it does not know which method asked for them.
"""

from __future__ import annotations

from temporal_ray.config import EngineConfig, GenerationConfig
from temporal_ray.generate.pool import run_engine_pool
from temporal_ray.generate.requests import candidate_requests, to_candidate


def generate_candidates(prompts_path: str, model_path: str, role: str,
                        generation: GenerationConfig, engine: EngineConfig,
                        out_dir: str) -> None:
    import ray.data

    requests = ray.data.read_parquet(prompts_path).flat_map(
        candidate_requests,
        fn_kwargs={
            "role": role, "samples": generation.samples,
            "temperature": generation.temperature, "top_p": generation.top_p,
            "max_tokens": generation.max_new_tokens, "seed": generation.seed,
        },
    )
    run_engine_pool(requests, model_path, engine).map(to_candidate).write_parquet(out_dir)
