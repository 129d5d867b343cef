"""Pools kept between stages (engine.keep_alive): real Ray Serve applications on a real local
cluster, called from Ray Data tasks."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from temporal_ray.config import EngineConfig, GenerationConfig
from temporal_ray.generate.hf_engine import HFEngine
from temporal_ray.generate.kept_pool import (
    pool_app_name,
    release_kept_pools,
    releasing_kept_pools,
    running_pools,
)
from temporal_ray.generate.requests import candidate_requests
from temporal_ray.generate.stage import generate_candidates
from temporal_ray.storage import read_rows, write_rows

PROMPTS = [{"prompt_id": f"p{i}", "prompt": f"Name {i} fruits."} for i in range(6)]


def replica_pids(app: str, calls: int = 20) -> set[int]:
    from ray import serve

    handle = serve.get_app_handle(app)
    return {handle.describe.remote().result()["pid"] for _ in range(calls)}


def expected_responses(model: str, role: str, generation: GenerationConfig) -> dict:
    """What the engine itself generates for the stage's requests (same per-row seeds)."""
    requests = pd.DataFrame([row for prompt in PROMPTS for row in candidate_requests(
        prompt, role, generation.samples, generation.temperature, generation.top_p,
        generation.max_new_tokens, generation.seed)])
    return {(r.prompt_id, r.sample_index): r.generated_text
            for r in HFEngine(model)(requests).itertuples()}


def wait_for_cpus(expected: float) -> None:
    import ray

    deadline = time.time() + 30  # replicas release their resources asynchronously
    while ray.available_resources().get("CPU", 0) < expected:
        assert time.time() < deadline, f"CPUs still held: {ray.available_resources()}"
        time.sleep(0.5)


def test_app_names_follow_the_model_and_the_pool_settings():
    engine = EngineConfig(keep_alive=True, actors=2)
    assert pool_app_name("/m0", engine) == pool_app_name("/m0", engine.model_copy())
    assert pool_app_name("/m0", engine) != pool_app_name("/m1", engine)
    assert pool_app_name("/m0", engine) != pool_app_name("/m0", engine.model_copy(
        update={"actors": 1}))
    # Batch size is the request's business, not the pool's: the same pool serves both.
    assert pool_app_name("/m0", engine) == pool_app_name("/m0", engine.model_copy(
        update={"batch_size": 3}))


def test_keep_alive_is_refused_where_there_is_nothing_to_keep():
    with pytest.raises(ValueError, match="keep_alive works with the hf engine only"):
        EngineConfig(kind="http", url="http://judge/v1/chat/completions", keep_alive=True)
    with pytest.raises(ValueError, match="kept vLLM pools are not built yet"):
        EngineConfig(kind="vllm", keep_alive=True)


@pytest.mark.slow
def test_a_kept_pool_serves_later_stages_without_starting_again(tiny_model, lora_checkpoint,
                                                                ray_cluster, tmp_path):
    """Two generate stages on one kept pool of 2 replicas: each gives exactly the engine's
    own texts, none lost or twice, and the second runs on the replicas the first started.
    A pool for another model replaces it; release frees the CPUs."""
    import ray

    write_rows(PROMPTS, str(tmp_path / "prompts" / "p.parquet"))
    engine = EngineConfig(actors=2, batch_size=4, keep_alive=True)
    all_cpus = ray.cluster_resources()["CPU"]
    app = pool_app_name(tiny_model, engine)
    with releasing_kept_pools(True):
        pids = None
        for stage, seed in [("first", 3), ("second", 4)]:
            generation = GenerationConfig(samples=2, max_new_tokens=8, temperature=0.9,
                                          seed=seed)
            generate_candidates(str(tmp_path / "prompts"), {"past": tiny_model}, generation,
                                engine, str(tmp_path / stage))
            rows = read_rows(str(tmp_path / stage))
            responses = {(r["prompt_id"], r["sample_index"]): r["response"] for r in rows}
            assert len(rows) == len(responses) == len(PROMPTS) * 2
            assert responses == expected_responses(tiny_model, "past", generation)
            assert running_pools() == [app]
            seen = replica_pids(app)
            assert seen and (pids is None or seen <= pids), "the pool was started again"
            pids = pids or seen
        assert ray.available_resources().get("CPU", 0) <= all_cpus - 2  # held while kept

        # Another model: the running pool is released first, one kept pool at a time.
        generation = GenerationConfig(samples=1, max_new_tokens=4, seed=5)
        generate_candidates(str(tmp_path / "prompts"), {"present": lora_checkpoint},
                            generation, engine, str(tmp_path / "other"))
        assert running_pools() == [pool_app_name(lora_checkpoint, engine)]
    assert running_pools() == []
    wait_for_cpus(all_cpus)
    assert release_kept_pools() == []  # nothing left, and no error


@pytest.mark.slow
def test_lora_on_one_base_generate_and_judge_share_one_kept_pool(tiny_model, lora_checkpoint,
                                                                 ray_cluster, tmp_path):
    """LoRA on one base: past (M0), present (an adapter of M0) and the judge (the present
    model) all run on one kept pool of the base, which loads the adapter once."""
    from ray import serve

    from temporal_ray.config import load_config
    from temporal_ray.miniature import TOY_JUDGE_TEMPLATE
    from temporal_ray.roles import Role
    from temporal_ray.stages import IterationStages
    from temporal_ray.storage import RunDir

    write_rows(PROMPTS, str(tmp_path / "prompts" / "p.parquet"))
    cfg = load_config(None, [f"model.path={tiny_model}", "data.prompts=p.jsonl",
                             f"storage.run_dir={tmp_path}/run", "generation.samples=2",
                             "generation.max_new_tokens=6", "engine.actors=1",
                             "engine.batch_size=4", "engine.keep_alive=true",
                             "judge.kind=llm", f"judge.prompt_template={TOY_JUDGE_TEMPLATE}",
                             "judge.samples=1", "judge.max_new_tokens=4",
                             "judge.min_valid_share=0", "dpo.lora.enabled=true",
                             "dpo.lora.base=initial", "dpo.lora.rank=4"])
    assert cfg.keeps_pools
    stages = IterationStages(cfg, RunDir(str(tmp_path / "run")), 0)
    app = pool_app_name(tiny_model, cfg.engine)
    with releasing_kept_pools(cfg.keeps_pools):
        present, past = stages.generate_together(
            {Role.PRESENT: lora_checkpoint, Role.PAST: tiny_model}, str(tmp_path / "prompts"))
        (pid,) = replica_pids(app, calls=3)
        stages.judge("scores_present_past", [present, past], judge_model=lora_checkpoint)
        assert running_pools() == [app]
        described = serve.get_app_handle(app).describe.remote().result()
        assert described == {"pid": pid, "adapters": [f"{lora_checkpoint}/adapter"]}
        generation = cfg.generation.model_copy(update={"seed": stages_seed(cfg)})
        assert {(r["prompt_id"], r["sample_index"]): r["response"]
                for r in read_rows(present)} == expected_responses(lora_checkpoint, "present",
                                                                    generation)
    assert running_pools() == []


def stages_seed(cfg) -> int:
    from temporal_ray.generate.requests import derive_seed

    return derive_seed(cfg.generation.seed, 0)
