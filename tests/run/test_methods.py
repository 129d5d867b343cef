"""`MethodSpec.stages` is what each method's iteration function really makes, in order: the
real function replayed by the real `IterationStages` over a run directory whose stages have
all finished (so each stage returns at once: no engine, no training, no cluster)."""

import json

import pytest

from temporal_ray.config import load_config
from temporal_ray.engines.kept_pool import KeptPools
from temporal_ray.run.iteration import PROMPTS, IterationStages
from temporal_ray.run.methods import METHODS
from temporal_ray.storage.run_dir import MANIFEST, RunDir


@pytest.mark.parametrize("method", sorted(METHODS))
def test_an_iteration_makes_exactly_the_stages_its_spec_lists(tmp_path, method):
    cfg = load_config(None, ["model.path=/m", "data.prompts=/p.jsonl",
                             f"storage.run_dir={tmp_path}", f"method.name={method}"])
    run = RunDir(str(tmp_path))
    spec = METHODS[method]
    every_role_scored = {"candidates": 1, "scored": 1, "no_score": 0, "out_of_range": 0}
    for name in (PROMPTS, *spec.stages):
        # A judge stage's manifest is checked on reuse too (judge.min_valid_share).
        run.write_text(f"iter_0/{name}/{MANIFEST}", json.dumps(
            {"stage": f"iter_0/{name}", "finished_at": 0.0, "seconds": 0.0,
             "roles": {role: every_role_scored for role in ("present", "past", "future")}}))
    stages = IterationStages(cfg, run, 0, KeptPools())
    prompts = stages.prompts([])
    model = spec.iteration(stages, prompts, present="/m", past="/m")
    assert [r["stage"] for r in stages.records] == [f"iter_0/{n}" for n in
                                                    (PROMPTS, *spec.stages)]
    assert all(r["reused"] for r in stages.records)
    assert model == run.uri_of(run.path("iter_0", "model"))
