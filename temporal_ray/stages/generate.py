"""Stage: generate candidates. Prompts + the models of one or more roles -> K sampled
responses per prompt and role.

In:  Parquet prompt rows {prompt_id, prompt}; per role the model that plays it.
Out: Parquet candidate rows (core/rows.py `CandidateRow`), one per (prompt, role, sample).
Ray Data reads the prompts, explodes them into per-sample requests, runs them through one
engine pool (a progress bar counting the rows as they come back) and writes the candidates;
it does not know which method asked for them. Several roles share a pass only when one pool
serves all their models (LoRA on one base): the pass writes every role's rows together, and
`role_rows` picks one role's out of it.
"""

from __future__ import annotations

import statistics
from typing import Any

from temporal_ray.config import GenerationConfig
from temporal_ray.core.requests import candidate_requests, to_candidate
from temporal_ray.engines.pool import EnginePool, run_models_pool
from temporal_ray.storage.files import count_rows, read_dataset, read_rows
from temporal_ray.terminal import Progress


def generate_candidates(prompts_path: str, models: dict[str, str],
                        generation: GenerationConfig, pool: EnginePool, out_dir: str) -> None:
    """`models`: role -> model directory. Several roles need a pool that serves them all:
    their models are one base and LoRA checkpoints of it (`pool.lora_rank`)."""
    prompts = read_dataset(prompts_path)
    per_role = [prompts.flat_map(candidate_requests, fn_kwargs={
        "role": role, "samples": generation.samples,
        "temperature": generation.temperature, "top_p": generation.top_p,
        "max_tokens": generation.max_new_tokens, "seed": generation.seed,
    }) for role in models]
    requests = per_role[0].union(*per_role[1:]) if len(per_role) > 1 else per_role[0]
    rows = count_rows(prompts_path) * generation.samples * len(models)
    with Progress(f"generating ({', '.join(models)})", rows, "rows") as bar:
        outputs = run_models_pool(requests, models, "role", pool, rows, on_rows=bar.update)
    outputs.map(to_candidate).write_parquet(out_dir)


def can_share_a_pass(pools: dict[str, EnginePool]) -> bool:
    """Whether these roles' candidates can come from one pass of one pool: LoRA on one base
    (one pool holds the base once, each request naming its adapter), and the same pool
    settings for every role."""
    if len(pools) < 2:
        return False
    first = next(iter(pools.values()))
    return first.lora_rank is not None and all(pool.engine == first.engine
                                                for pool in pools.values())


def role_rows(shared_dir: str, role: str, out_dir: str) -> None:
    """One role's candidates out of a shared pass (`generate_candidates` of several roles)."""
    from ray.data.expressions import col

    read_dataset(shared_dir).filter(expr=col("role") == role).write_parquet(out_dir)


def candidate_counts(out_dir: str) -> dict[str, Any]:
    """What a generate stage's manifest says of its candidates. Its compute in tokens as the
    engine counted them from its token ids: generated_prompt_tokens, the prompt tokens of
    every request (a prompt's K samples count K times, though vLLM's prefix cache may
    prefill it once), and generated_tokens, the sampled ones."""
    rows = read_rows(out_dir, ["prompt_tokens", "response_tokens"])
    tokens = [r["response_tokens"] for r in rows]
    return {"rows": len(tokens),
            "mean_response_tokens": statistics.fmean(tokens) if tokens else float("nan"),
            "generated_prompt_tokens": sum(int(r["prompt_tokens"]) for r in rows),
            "generated_tokens": sum(int(t) for t in tokens)}
