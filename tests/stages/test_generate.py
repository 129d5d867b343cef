"""The generate stage through real Ray Data actor pools: the output does not depend on how
many actors share the work."""

from __future__ import annotations

import os

import pytest

from temporal_ray.config import EngineConfig, GenerationConfig
from temporal_ray.engines.pool import EnginePool
from temporal_ray.inputs.load import load_prompts
from temporal_ray.stages.generate import generate_candidates
from temporal_ray.storage.files import read_rows, write_rows

pytestmark = pytest.mark.slow

PROMPTS_FILE = os.path.join(os.path.dirname(__file__), "..", "..", "temporal_ray", "assets",
                            "tiny_prompts.jsonl")


def test_one_actor_or_two_give_the_same_candidates(tiny_model, ray_cluster, tmp_path):
    prompts = load_prompts(PROMPTS_FILE).rows[:10]
    write_rows(prompts, str(tmp_path / "prompts" / "p.parquet"))
    generation = GenerationConfig(samples=3, max_new_tokens=16, temperature=0.9, seed=11)
    outputs = {}
    # 30 requests: blocks of 4 batches (16 rows, the default) or of one (4 rows).
    pools = {"1": EngineConfig(actors=1, batch_size=4), "2": EngineConfig(actors=2, batch_size=4),
             "2, a batch a block": EngineConfig(actors=2, batch_size=4, batches_per_block=1),
             "1 to 2": EngineConfig(actors=1, max_actors=2, batch_size=4)}  # autoscaling
    for name, engine in pools.items():
        out = tmp_path / f"actors {name}"
        generate_candidates(str(tmp_path / "prompts"), {"past": tiny_model}, generation,
                            EnginePool(engine), str(out))
        rows = read_rows(str(out))
        outputs[name] = {(r["prompt_id"], r["sample_index"]): r["response"] for r in rows}
        assert len(rows) == len(outputs[name]) == 10 * 3  # none lost, none twice
    assert {p for p, _ in outputs["1"]} == {p["prompt_id"] for p in prompts}
    assert outputs["1"] == outputs["2"] == outputs["2, a batch a block"] == outputs["1 to 2"]
    # Each pool is gone once its stage returns: the next stage (a DPO job) gets its CPUs/GPUs.
    import time

    import ray

    deadline = time.time() + 30  # actors release their resources asynchronously
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"]:
        assert time.time() < deadline, f"CPUs still held: {ray.available_resources()}"
        time.sleep(0.5)
