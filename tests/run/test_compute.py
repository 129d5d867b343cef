"""temporal_ray.run.compute: a method's tokens summed from hand-made finished stages."""

from __future__ import annotations

import pytest

from temporal_ray.run.compute import compute_ratios, method_compute
from temporal_ray.run.report import describe_compute
from temporal_ray.storage.run_dir import RunDir


def _stage(run: RunDir, stage: str, **manifest) -> None:
    run.run_stage(stage, lambda tmp: {}, **manifest)


def _iteration(run: RunDir, i: int, scale: int = 1) -> None:
    _stage(run, f"iter_{i}/prompts", kind="prompts", rows=4)
    _stage(run, f"iter_{i}/candidates_present", kind="generate",
           generated_prompt_tokens=100 * scale, generated_tokens=40 * scale)
    _stage(run, f"iter_{i}/scores_present", kind="judge", judge_prompt_tokens=300 * scale,
           judge_generated_tokens=20 * scale)
    _stage(run, f"iter_{i}/pairs", kind="pairs", pairs=2)
    _stage(run, f"iter_{i}/model", kind="dpo", dpo_forward_tokens=80 * scale,
           dpo_backward_tokens=30 * scale, reference_forward_tokens=40 * scale)


@pytest.fixture
def run(tmp_path) -> RunDir:
    run = RunDir(str(tmp_path / "run"))
    _iteration(run, 0)
    _iteration(run, 1, scale=2)
    _stage(run, "iter_1/collapse", kind="collapse", count=2)  # analysis: not counted
    run.run_stage("sft_like", lambda tmp: {}, kind="dpo",  # outside iter_<i>/: not a method's
                  dpo_forward_tokens=10**6)
    return run


def test_method_compute_sums_each_key_over_the_iterations(run):
    compute = method_compute(run)
    assert compute == {
        "generated_prompt_tokens": 300, "generated_tokens": 120,
        "judge_prompt_tokens": 900, "judge_generated_tokens": 60,
        "dpo_forward_tokens": 240, "dpo_backward_tokens": 90,
        "reference_forward_tokens": 120,
        "total_tokens": 300 + 120 + 900 + 60 + 240 + 120,  # backward is within forward
        "dpo_runs": 2, "iterations": 2, "stages_without_counts": []}


def test_method_compute_stops_at_the_iterations_asked_for(run):
    compute = method_compute(run, iterations=1)
    assert compute["generated_tokens"] == 40 and compute["dpo_runs"] == 1
    assert compute["iterations"] == 1


def test_stages_written_before_counting_are_named(run):
    _stage(run, "iter_2/model", kind="dpo", pairs=2)  # an older manifest: no counts
    compute = method_compute(run)
    assert compute["stages_without_counts"] == ["iter_2/model"]
    assert compute["dpo_forward_tokens"] == 240 and compute["dpo_runs"] == 3
    assert "1 stages without counts" in describe_compute(compute)


def test_an_empty_run_counts_nothing(tmp_path):
    compute = method_compute(RunDir(str(tmp_path / "empty")))
    assert compute["total_tokens"] == 0 and compute["iterations"] == 0


def test_ratios_against_a_base_method(run, tmp_path):
    other = RunDir(str(tmp_path / "other"))
    _iteration(other, 0, scale=3)
    ratios = compute_ratios({"a": method_compute(run), "b": method_compute(other)}, base="a")
    assert list(ratios) == ["b"]
    assert ratios["b"]["generated_tokens"] == pytest.approx(1.0)  # 120 vs 120
    assert ratios["b"]["dpo_forward_tokens"] == pytest.approx(1.0)
    no_judge = {**method_compute(run), "judge_prompt_tokens": 0}
    assert compute_ratios({"a": no_judge, "b": method_compute(other)},
                          "a")["b"]["judge_prompt_tokens"] is None


def test_describe_compute_is_one_line(run):
    line = describe_compute(method_compute(run))
    assert "\n" not in line
    assert line.startswith("compute in tokens: generated 120 (prompts 300), judge 60 "
                           "(prompts 900), DPO forward 240, backward 90, reference 120")
    assert "over 2 DPO runs" in line
