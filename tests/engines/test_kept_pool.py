"""Pools kept between stages (engine.keep_alive): real engine actors on a real local cluster,
fed from and back into Ray Data."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest

from temporal_ray.config import EngineConfig, GenerationConfig
from temporal_ray.engines.kept_pool import KeptPools, pool_name
from temporal_ray.engines.pool import EnginePool
from temporal_ray.stages.generate import generate_candidates
from temporal_ray.storage.files import read_rows, write_rows

PROMPTS = [{"prompt_id": f"p{i}", "prompt": f"Name {i} fruits."} for i in range(6)]


def engine_pids(pools: KeptPools, name: str) -> set[int]:
    import ray

    return {ray.get(actor.describe.remote())["pid"] for actor in pools.actors(name)}


def kill_and_wait(pid: int) -> None:
    """SIGKILL `pid` and wait until it is gone (or a zombie: dead, not yet reaped)."""
    import psutil

    os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 10
    with contextlib.suppress(psutil.NoSuchProcess):
        while psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            assert time.time() < deadline, f"engine process {pid} still alive after SIGKILL"
            time.sleep(0.1)


def wait_for_cpus(expected: float) -> None:
    import ray

    deadline = time.time() + 30  # actors release their resources asynchronously
    while ray.available_resources().get("CPU", 0) < expected:
        assert time.time() < deadline, f"CPUs still held: {ray.available_resources()}"
        time.sleep(0.5)


def test_pool_names_follow_the_pool_settings_not_the_model():
    """One pool per setting for a whole run: its name does not change with the model it
    serves, so the next model's stage finds it (and loads its weights in place)."""
    engine = EngineConfig(keep_alive=True, actors=2)
    assert pool_name(engine) == pool_name(engine.model_copy())
    assert pool_name(engine) != pool_name(engine.model_copy(update={"actors": 1}))
    assert pool_name(engine) != pool_name(engine.model_copy(update={"kind": "vllm"}))
    assert pool_name(engine) != pool_name(engine, lora_rank=8)
    # Batch size is the requests' business, not the pool's: the same pool serves both.
    assert pool_name(engine) == pool_name(engine.model_copy(update={"batch_size": 3}))


def test_weights_load_in_place_only_into_an_engine_of_the_same_shape(tiny_model,
                                                                      lora_checkpoint,
                                                                      tmp_path):
    """A DPO checkpoint of the model (same config but its name, same tokenizer) can; a
    model of another shape or tokenizer cannot."""
    import json
    import shutil

    from temporal_ray.engines.kept_pool import same_shape

    assert same_shape(tiny_model, lora_checkpoint)
    wider = shutil.copytree(tiny_model, tmp_path / "wider")
    config = json.loads((wider / "config.json").read_text())
    (wider / "config.json").write_text(json.dumps({**config,
                                                  "hidden_size": 2 * config["hidden_size"]}))
    assert not same_shape(tiny_model, str(wider))
    retokenized = shutil.copytree(tiny_model, tmp_path / "retokenized")
    (retokenized / "chat_template.jinja").write_text("{{ messages }}")
    assert not same_shape(tiny_model, str(retokenized))
    assert not same_shape(tiny_model, str(tmp_path / "missing"))


def test_a_kept_engine_generates_a_block_batch_size_rows_at_a_time(tiny_model):
    """A kept pool sends blocks of several batches: the engine runs them batch by batch and
    returns every row, in order, with the text the engine gives the rows on their own."""
    import pandas as pd

    from temporal_ray.core.requests import candidate_requests
    from temporal_ray.engines.kept_pool import PoolEngine

    pool_engine = PoolEngine(tiny_model, EngineConfig())
    engine, sizes = pool_engine.engine, []
    pool_engine.engine = lambda batch: sizes.append(len(batch)) or engine(batch)
    block = pd.DataFrame([row for prompt in PROMPTS[:5] for row in candidate_requests(
        prompt, "past", 2, 0.9, 0.95, 6, 3)])
    out = pool_engine.generate(block, batch_size=4)
    assert sizes == [4, 4, 2]
    assert list(out["prompt_id"]) == list(block["prompt_id"])
    assert list(out["sample_index"]) == list(block["sample_index"])
    assert list(out["generated_text"]) == list(engine(block)["generated_text"])


def test_keep_alive_is_refused_where_there_is_nothing_to_keep():
    with pytest.raises(ValueError, match="fixed size"):
        EngineConfig(keep_alive=True, actors=1, max_actors=4)
    with pytest.raises(ValueError, match="an http endpoint already runs on its own"):
        EngineConfig(kind="http", url="http://judge/v1/chat/completions", keep_alive=True)
    with pytest.raises(ValueError, match="fixed size"):
        EngineConfig(kind="vllm", keep_alive=True, actors=1, max_actors=4)


@pytest.mark.slow
@pytest.mark.chaos
def test_a_kept_pool_serves_later_stages_without_starting_again(tiny_model, lora_checkpoint,
                                                                ray_cluster, tmp_path,
                                                                engine_texts, chaos_record):
    """Two generate stages on one kept pool of 2 engines: each gives exactly the engine's
    own texts, none lost or twice, and the second runs on the engines the first started. The
    next model of the same shape is loaded into them in place; an engine SIGKILLed between
    two stages is started again by Ray and serves the next stage with the pool's model; a
    pool of other settings replaces the pool; release frees the CPUs."""
    import ray

    write_rows(PROMPTS, str(tmp_path / "prompts" / "p.parquet"))
    # 12 requests in blocks of 2 batches: both engines get a block, one of them a short one.
    engine = EngineConfig(actors=2, batch_size=4, batches_per_block=2, keep_alive=True)
    all_cpus = ray.cluster_resources()["CPU"]
    app = pool_name(engine)

    def generated(model: str, out: str, seed: int, on: EngineConfig = engine
                  ) -> tuple[list[dict], dict]:
        """The stage's rows, and the texts the engine gives the requests on their own."""
        generation = GenerationConfig(samples=2, max_new_tokens=8, temperature=0.9, seed=seed)
        generate_candidates(str(tmp_path / "prompts"), {"past": model}, generation,
                            EnginePool(on, kept=pools), str(tmp_path / out))
        return (read_rows(str(tmp_path / out)),
                engine_texts(model, PROMPTS, "past", generation))

    def stage(model: str, out: str, seed: int, on: EngineConfig = engine) -> None:
        rows, expected = generated(model, out, seed, on)
        responses = {(r["prompt_id"], r["sample_index"]): r["response"] for r in rows}
        assert len(rows) == len(responses) == len(PROMPTS) * 2
        assert responses == expected

    with KeptPools() as pools:
        pids = None
        for out, seed in [("first", 3), ("second", 4)]:
            stage(tiny_model, out, seed)
            assert pools.running() == [app]
            seen = engine_pids(pools, app)
            assert len(seen) == 2 and (pids is None or seen == pids), "started again"
            pids = seen
        assert ray.available_resources().get("CPU", 0) <= all_cpus - 2  # held while kept

        # The next model of the run (the same shape): its weights go into the same engines.
        stage(lora_checkpoint, "next model", 3)
        assert engine_pids(pools, app) == pids
        assert pools.uses == ["started", "reused", "reloaded"]
        assert pools.counts() == {"engine_starts": 2, "weight_loads": 2}

        # An engine SIGKILLed between two stages comes back (Ray) with the model it was
        # started with, M0: the next stage's blocks name the pool's model, which it loads.
        victim = min(pids)
        kill_and_wait(victim)
        rows, expected = generated(lora_checkpoint, "after a kill", 4)
        responses = {(r["prompt_id"], r["sample_index"]): r["response"] for r in rows}
        restarted = engine_pids(pools, app)
        chaos_record("kept-pool engine SIGKILL between stages", 1,
                     responses == expected and len(rows) == len(responses),
                     len(expected.keys() - responses.keys()))
        assert len(rows) == len(responses) and responses == expected
        assert victim not in restarted and len(restarted & pids) == 1
        assert {ray.get(actor.describe.remote())["model"]
                for actor in pools.actors(app)} == {lora_checkpoint}
        assert pools.uses[-1] == "reused"

        # One pool at a time: a kept pool of other settings replaces the running one, and a
        # pool that is not kept releases it before it starts.
        one = engine.model_copy(update={"actors": 1})
        stage(lora_checkpoint, "other", 5, on=one)
        assert pools.running() == [pool_name(one)]
        # A DPO stage keeps the pool when its workers fit beside it, else releases it.
        assert pools.make_room({"CPU": all_cpus - 1}) == []
        assert pools.make_room({"CPU": all_cpus}, wait_s=1) == [pool_name(one)]
        stage(lora_checkpoint, "kept again", 5, on=one)
        stage(lora_checkpoint, "not kept", 5, on=one.model_copy(update={"keep_alive": False}))
        assert pools.running() == []
        assert pools.counts() == {"engine_starts": 5, "weight_loads": 2}
    wait_for_cpus(all_cpus)
    assert pools.release() == []  # nothing left, and no error


@pytest.mark.slow
def test_lora_on_one_base_generate_and_judge_share_one_kept_pool(tiny_model, lora_checkpoint,
                                                                 ray_cluster, tmp_path,
                                                                 engine_texts):
    """LoRA on one base: past (M0), present (an adapter of M0) and the judge (the present
    model) all run on one kept pool of the base, which loads the adapter once."""
    import ray

    from temporal_ray.config import load_config
    from temporal_ray.core.roles import Role
    from temporal_ray.miniature.recipe import TOY_JUDGE_TEMPLATE
    from temporal_ray.run.iteration import IterationStages
    from temporal_ray.run.report import describe_stage
    from temporal_ray.storage.run_dir import RunDir

    write_rows(PROMPTS, str(tmp_path / "prompts" / "p.parquet"))
    cfg = load_config(None, [f"model.path={tiny_model}", "data.prompts=p.jsonl",
                             f"storage.run_dir={tmp_path}/run", "generation.samples=2",
                             "generation.max_new_tokens=6", "engine.actors=1",
                             "engine.batch_size=4", "engine.keep_alive=true",
                             "judge.kind=llm", f"judge.prompt_template={TOY_JUDGE_TEMPLATE}",
                             "judge.samples=1", "judge.max_new_tokens=4",
                             "judge.min_valid_share=0", "dpo.lora.enabled=true",
                             "dpo.lora.base=initial", "dpo.lora.rank=4"])
    pools = KeptPools()
    stages = IterationStages(cfg, RunDir(str(tmp_path / "run")), 0, pools)
    app = pool_name(cfg.engine, lora_rank=4)
    with pools:
        present, past = stages.generate_together(
            {Role.PRESENT: lora_checkpoint, Role.PAST: tiny_model}, str(tmp_path / "prompts"))
        (pid,) = engine_pids(pools, app)
        stages.judge("scores_present_past", [present, past], judge_model=lora_checkpoint)
        assert pools.running() == [app]
        # The run summary says which stage started the pool and which found it running.
        assert [r["kept_pool"] for r in stages.records] == ["started", "started", "reused"]
        assert describe_stage(stages.records[-1]).endswith("[kept pool reused]")
        described = ray.get(pools.actors(app)[0].describe.remote())
        assert described == {"pid": pid, "model": tiny_model,
                             "adapters": [f"{lora_checkpoint}/adapter"]}
        generation = cfg.generation.model_copy(update={"seed": stages_seed(cfg)})
        assert {(r["prompt_id"], r["sample_index"]): r["response"]
                for r in read_rows(present)} == engine_texts(lora_checkpoint, PROMPTS, "present",
                                                              generation)
    assert pools.running() == []


def stages_seed(cfg) -> int:
    from temporal_ray.core.requests import derive_seed

    return derive_seed(cfg.generation.seed, 0)


@pytest.mark.slow
@pytest.mark.chaos
def test_a_killed_kept_engine_is_restarted_and_its_batches_sent_again(tiny_model, ray_cluster,
                                                                      tmp_path, chaos_record,
                                                                      kill_a_pool_engine):
    """SIGKILL one engine of a kept pool mid-stage: Ray restarts it and sends its blocks
    again; the stage writes every (prompt, sample) once, with the texts of an undisturbed
    stage, and the pool keeps serving."""


    # 96 requests: 6 blocks of 4 batches, 3 for each engine, so both are busy when one is
    # killed 1 s in (with 3 blocks, one engine could be done and idle by then).
    prompts = [{"prompt_id": f"p{i}", "prompt": f"Tell me about {i} rivers."} for i in range(48)]
    write_rows(prompts, str(tmp_path / "prompts" / "p.parquet"))
    generation = GenerationConfig(samples=2, max_new_tokens=48, temperature=1.0, seed=3)
    engine = EngineConfig(actors=2, batch_size=4, keep_alive=True)

    pools = KeptPools()

    def generate(out: str) -> dict:
        generate_candidates(str(tmp_path / "prompts"), {"present": tiny_model}, generation,
                            EnginePool(engine, kept=pools), str(tmp_path / out))
        rows = read_rows(str(tmp_path / out))
        responses = {(r["prompt_id"], r["sample_index"]): r["response"] for r in rows}
        assert len(responses) == len(rows), "a (prompt, sample) was written twice"
        return responses

    with pools:
        clean = generate("clean")  # also starts the pool
        with kill_a_pool_engine(1.0) as killed:
            faulted = generate("faulted")
            finished = time.time()
        assert killed and killed[0] < finished - 0.5, "no engine was killed mid-stage"
        lost = len(clean) - len(faulted)
        chaos_record("kept-pool engine SIGKILL mid-stage", 1, faulted == clean, max(lost, 0))
        assert len(clean) == 48 * 2 and faulted == clean
        assert generate("after") == clean  # the restarted engine serves the next stage
