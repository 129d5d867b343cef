"""How far apart chosen and rejected are in one iteration's update pairs (method.md, "what the
paper measures"): the judge-score gap, the cosine of chosen vs rejected final-layer features
under M_i, the DPO implicit reward margin and gradient norm, and pairs kept and dropped.

In:  a method's run directory with iteration i finished, and M_i.
Out: the stage iter_<i>/collapse, whose manifest holds the measurements, so a rerun reads them
     instead of recomputing. The cosine needs M_i loaded: it runs as one Ray task with the
     engine's resources (a GPU on GPU runs), not in the driver. The formulas are metrics.py's.
"""

from __future__ import annotations

from typing import Any

from temporal_ray.analysis.metrics import dpo_summary, pair_score_stats
from temporal_ray.config import EngineConfig
from temporal_ray.run.methods import METHODS
from temporal_ray.storage.files import read_rows
from temporal_ray.storage.run_dir import RunDir

PAIR_COLUMNS = ["prompt", "system", "chosen", "rejected", "chosen_score", "rejected_score"]


def mean_pair_cosine(model_path: str, pairs: list[dict[str, Any]], use_gpu: bool) -> float | None:
    """Mean chosen-vs-rejected cosine of the pairs' response features under `model_path`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from temporal_ray.analysis.metrics import chosen_rejected_cosine
    from temporal_ray.storage.files import ensure_local

    local = ensure_local(model_path)
    device = "cuda" if use_gpu else "cpu"
    dtype = torch.bfloat16 if use_gpu else torch.float32
    model = AutoModelForCausalLM.from_pretrained(local, dtype=dtype).to(device)
    tokenizer = AutoTokenizer.from_pretrained(local)
    return chosen_rejected_cosine(model, tokenizer, pairs)


def iteration_collapse(run: RunDir, method: str, iteration: int, present_model: str,
                       engine: EngineConfig) -> dict[str, Any]:
    """The collapse measurements of one finished iteration (computed once, then read)."""
    import ray

    stage = f"iter_{iteration}"
    pairs_stage = run.finished(f"{stage}/{METHODS[method].update_pairs}")
    dpo_stage = run.finished(f"{stage}/model")
    if pairs_stage is None or dpo_stage is None:
        raise RuntimeError(f"{run.uri}: iteration {iteration} has not finished; run it first")

    def produce(tmp: str) -> dict[str, Any]:
        pairs = read_rows(f"{pairs_stage.path}/data/pairs.parquet", PAIR_COLUMNS)
        use_gpu = engine.gpus_per_actor > 0
        task = ray.remote(mean_pair_cosine).options(
            num_cpus=engine.cpus_per_actor, num_gpus=1 if use_gpu else 0,
            resources=engine.resources or None)
        dpo = dpo_summary(dpo_stage.manifest)
        return {**pair_score_stats(pairs),
                "dropped": pairs_stage.manifest["dropped"],
                "chosen_roles": pairs_stage.manifest.get("chosen_roles", {}),
                "cosine": ray.get(task.remote(present_model, pairs, use_gpu)),
                **{f"dpo_{key}": value for key, value in dpo.items()}}

    return run.run_stage(f"{stage}/collapse", produce, kind="collapse", method=method,
                         iteration=iteration, judge_model=present_model).manifest
