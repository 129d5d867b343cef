"""The counting and checks of run/iteration.py that need no cluster."""

import pytest

from temporal_ray.config import JudgeConfig, load_config
from temporal_ray.core.judging import judge_counts
from temporal_ray.core.pairs import PairSet, pair_counts
from temporal_ray.engines.kept_pool import KeptPools
from temporal_ray.run.iteration import IterationStages, JudgeFailureError, check_judged_share
from temporal_ray.storage.files import read_rows, write_rows
from temporal_ray.storage.run_dir import RunDir

PATTERN = JudgeConfig().score_pattern


def test_judge_counts_per_role_and_reason():
    rows = [
        {"role": "present", "score": 4.0, "judgements": ["Score: 4", "nothing"]},
        {"role": "present", "score": None, "judgements": ["Score: 9", "bla"]},
        {"role": "past", "score": 2.0, "judgements": []},  # a rule judge keeps no text
        {"role": "past", "score": None, "judgements": [], "over_context": True},
    ]
    counts = judge_counts(rows, PATTERN, 0.0, 5.0)
    assert counts["rows"] == 4
    assert counts["roles"]["present"] == {"candidates": 2, "scored": 1, "no_score": 2,
                                          "out_of_range": 1, "over_context": 0,
                                          "judge_truncated": 0, "mean_score": 4.0}
    assert counts["roles"]["past"]["mean_score"] == 2.0
    assert counts["roles"]["past"]["over_context"] == 1


def test_pair_counts():
    pairs = [{"chosen_score": 4.0, "rejected_score": 1.0, "chosen_role": "present"},
             {"chosen_score": 5.0, "rejected_score": 2.0, "chosen_role": "future"}]
    counts = pair_counts(PairSet(pairs, dropped={"tie": 2}))
    assert counts["pairs"] == 2 and counts["dropped"] == {"tie": 2}
    assert counts["mean_chosen_score"] == 4.5 and counts["mean_rejected_score"] == 1.5
    assert counts["score_gap"] == 3.0
    assert counts["chosen_roles"] == {"future": 1, "present": 1}


def test_candidate_counts_sum_the_engine_token_counts(tmp_path):
    from temporal_ray.stages.generate import candidate_counts

    rows = [{"prompt_id": "p0", "prompt_tokens": 12, "response_tokens": 5},
            {"prompt_id": "p0", "prompt_tokens": 12, "response_tokens": 7},
            {"prompt_id": "p1", "prompt_tokens": 9, "response_tokens": 0}]
    write_rows(rows, str(tmp_path / "data" / "c.parquet"))
    counts = candidate_counts(str(tmp_path / "data"))
    assert counts == {"rows": 3, "mean_response_tokens": 4.0,
                      "generated_prompt_tokens": 33, "generated_tokens": 12}


def test_too_few_valid_judgements_stop_with_examples(tmp_path):
    rows = [{"role": "present", "score": None, "judgements": ["I think it is fine."]},
            {"role": "present", "score": None, "judgements": ["Score: 12"]},
            {"role": "present", "score": 3.0, "judgements": ["Score: 3"]}]
    write_rows(rows, str(tmp_path / "data" / "s.parquet"))
    record = {"stage": "iter_0/scores_present", **judge_counts(rows, PATTERN, 0.0, 5.0)}
    with pytest.raises(JudgeFailureError) as err:
        check_judged_share(record, str(tmp_path / "data"), min_share=0.5)
    message = str(err.value)
    assert "scored 1 of 3 present candidates" in message
    assert "I think it is fine." in message and "judge.min_valid_share" in message
    check_judged_share(record, str(tmp_path / "data"), min_share=0.3)  # 33% is enough here


def driver_references() -> set[str]:
    """The objects this process (the driver) holds a reference to."""
    import ray

    return set(ray._private.worker.global_worker.core_worker.get_all_reference_counts())


@pytest.mark.slow
def test_a_fixed_judge_model_replaces_the_present_model(tiny_model, ray_cluster, tmp_path):
    """judge.model set: the stage judges with it (an external judge), not with M_i. And the
    finished stage leaves the driver holding none of its blocks (their nodes can go idle)."""
    from temporal_ray.config import load_config
    from temporal_ray.miniature.recipe import TOY_JUDGE_TEMPLATE
    from temporal_ray.run.iteration import IterationStages
    from temporal_ray.storage.files import read_rows
    from temporal_ray.storage.run_dir import RunDir

    candidates = [{"prompt_id": f"p{i}", "prompt": "Name a fruit.", "system": "",
                   "role": "present", "sample_index": 0, "response": "A banana.",
                   "prompt_tokens": 5,
                   "response_tokens": 3} for i in range(3)]
    write_rows(candidates, str(tmp_path / "candidates" / "c.parquet"))
    cfg = load_config(None, [f"model.path={tiny_model}", "data.prompts=p.jsonl",
                             f"storage.run_dir={tmp_path}/run", "judge.kind=llm",
                             f"judge.prompt_template={TOY_JUDGE_TEMPLATE}", "judge.samples=1",
                             "judge.max_new_tokens=4", "judge.min_valid_share=0",
                             f"judge.model={tiny_model}", "engine.actors=1"])
    stages = IterationStages(cfg, RunDir(str(tmp_path / "run")), 0, KeptPools())
    held_before = driver_references()
    path = stages.judge("scores_present", [str(tmp_path / "candidates")],
                        judge_model="/not/the/judge")
    assert driver_references() <= held_before
    assert stages.records[-1]["judge_model"] == tiny_model
    assert len(read_rows(path)) == 3


@pytest.mark.slow
def test_lora_on_one_base_serves_past_and_present_from_one_pool(tiny_model, lora_checkpoint,
                                                                 ray_cluster, tmp_path,
                                                                 engine_texts):
    """lora.base 'initial': past (M0) and present (an adapter of M0) are generated in one
    pass of one pool, yet published as their own stages; each role's candidates are what its
    own merged checkpoint generates for the same requests, and the judge stage serves the
    present model's adapter on the base the same way."""
    import pandas as pd

    from temporal_ray.config import load_config
    from temporal_ray.core.requests import derive_seed
    from temporal_ray.core.roles import Role
    from temporal_ray.core.rubric import load_template
    from temporal_ray.engines.hf import HFEngine
    from temporal_ray.miniature.recipe import TOY_JUDGE_TEMPLATE
    from temporal_ray.run.iteration import IterationStages
    from temporal_ray.run.report import describe_stage
    from temporal_ray.stages.judge import judge_requests
    from temporal_ray.storage.files import read_rows
    from temporal_ray.storage.run_dir import RunDir

    prompts = [{"prompt_id": f"p{i}", "prompt": f"Name {i} fruits."} for i in range(4)]
    write_rows(prompts, str(tmp_path / "prompts" / "p.parquet"))
    cfg = load_config(None, [f"model.path={tiny_model}", "data.prompts=p.jsonl",
                             f"storage.run_dir={tmp_path}/run", "generation.samples=2",
                             "generation.max_new_tokens=6", "engine.actors=1",
                             "engine.batch_size=4", "judge.kind=llm",
                             f"judge.prompt_template={TOY_JUDGE_TEMPLATE}", "judge.samples=1",
                             "judge.max_new_tokens=4", "judge.min_valid_share=0",
                             "dpo.lora.enabled=true", "dpo.lora.base=initial",
                             "dpo.lora.rank=4"])
    stages = IterationStages(cfg, RunDir(str(tmp_path / "run")), 0, KeptPools())
    present, past = stages.generate_together({Role.PRESENT: lora_checkpoint,
                                              Role.PAST: tiny_model}, str(tmp_path / "prompts"))
    assert [r["shared_pass"] for r in stages.records] == [["present", "past"]] * 2
    assert not (tmp_path / "run" / "iter_0" / ".shared_pass").exists()
    assert "(one pool with past: " in describe_stage(stages.records[0])
    assert "(one pool with present: " in describe_stage(stages.records[1])

    gen = cfg.generation
    stage_generation = gen.model_copy(update={"seed": derive_seed(gen.seed, 0)})
    for role, path, model in [("present", present, lora_checkpoint), ("past", past, tiny_model)]:
        rows = read_rows(path)
        assert {r["role"] for r in rows} == {role} and "model" not in rows[0]
        assert {(r["prompt_id"], r["sample_index"]): r["response"] for r in rows} == \
            engine_texts(model, prompts, role, stage_generation)

    scores = stages.judge("scores_present_past", [present, past], judge_model=lora_checkpoint)
    judge = cfg.judge
    candidates = read_rows(present) + read_rows(past)
    requests = pd.DataFrame([row for c in candidates for row in judge_requests(
        c, load_template(TOY_JUDGE_TEMPLATE), judge.samples, judge.temperature, judge.top_p,
        judge.max_new_tokens, derive_seed(gen.seed, 0, "scores_present_past"))])
    expected = HFEngine(lora_checkpoint)(requests)
    assert {(r["role"], r["prompt_id"], r["sample_index"]): list(r["judgements"])
            for r in read_rows(scores)} == {
        (r.role, r.prompt_id, r.sample_index): [r.generated_text]
        for r in expected.itertuples()}


def test_a_truncated_prompt_stage_is_redone_with_the_pairs_built_from_it(tmp_path, caplog):
    """The real stages of an iteration: the rerun names the damaged stage and file and redoes
    it and the pair stage that finished after it; an untouched rerun reuses both."""
    cfg = load_config(None, ["model.path=/m", "data.prompts=/p.jsonl",
                             f"storage.run_dir={tmp_path}"])
    prompts = [{"prompt_id": f"p{i}", "prompt": f"question {i}"} for i in range(20)]

    def iteration() -> dict[str, bool]:
        stages = IterationStages(cfg, RunDir(str(tmp_path)), 0, KeptPools())
        rows = read_rows(stages.prompts(prompts))
        stages.pairs("pairs", lambda: PairSet([
            {"prompt_id": r["prompt_id"], "prompt": r["prompt"], "chosen": "a",
             "rejected": "b", "chosen_score": 9.0, "rejected_score": 1.0,
             "chosen_role": "present", "rejected_role": "present"} for r in rows]))
        return {r["stage"]: r["reused"] for r in stages.records}

    assert iteration() == {"iter_0/prompts": False, "iter_0/pairs": False}
    assert iteration() == {"iter_0/prompts": True, "iter_0/pairs": True}
    parquet = tmp_path / "iter_0" / "prompts" / "data" / "prompts.parquet"
    parquet.write_bytes(parquet.read_bytes()[:-100])
    caplog.clear()
    assert iteration() == {"iter_0/prompts": False, "iter_0/pairs": False}
    # Ours only: the collection after each stage runs finalizers of earlier tests' Ray Data
    # objects, which may log on their own loggers.
    ours = [r for r in caplog.records if r.name.startswith("temporal_ray")]
    assert ours[0].getMessage().startswith(
        "stage iter_0/prompts is damaged: data/prompts.parquet has ")
    assert len(read_rows(str(tmp_path / "iter_0" / "pairs" / "data"))) == 20
