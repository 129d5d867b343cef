"""`temporal-ray eval` end to end on a hand-made run (M0 = the tiny model, M1 = another tiny
model) with real Ray Data pools: the exact rule judge checked against grading the stored answers
by hand, sandboxed HumanEval, the report, resuming, a changed eval section refused, and the
checkpoint judging itself with the pairwise prompt; the win rates' bootstrap intervals, the
AlpacaEval export, and HumanEval sampled several times a problem (pass@k)."""

from __future__ import annotations

import json

import pytest
import yaml

from temporal_ray.config import load_config
from temporal_ray.core.requests import derive_seed
from temporal_ray.evaluate.intervals import win_rate_intervals
from temporal_ray.evaluate.winrate import order_score
from temporal_ray.miniature.tasks import Task, grade, make_tasks
from temporal_ray.miniature.toy_data import heldout_rows, write_jsonl
from temporal_ray.storage.files import read_rows

pytestmark = pytest.mark.slow


def make_run(root, m0: str, m1: str) -> None:
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(yaml.safe_dump({"model": {"path": m0}}))
    (root / "summary.json").write_text(json.dumps({"method": "self_rewarding", "iterations": [
        {"iteration": 0, "model": m1}]}))


def tracked_eval(run_dir, method: str, metric: str) -> list[tuple[int, float]]:
    """(step, value) of `metric` in the evaluation's nested run of `method`, read with the
    MLflow client from the run's file store; the evaluation run holds the report files."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"file://{run_dir / 'mlruns'}")
    (experiment,) = client.search_experiments(filter_string=f"name = '{run_dir.name}'")
    runs = client.search_runs([experiment.experiment_id])
    (evaluation,) = [r for r in runs if r.info.run_name == "evaluation"]
    assert {a.path for a in client.list_artifacts(evaluation.info.run_id)} == {
        "report.png", "report.md", "results.json"}
    (nested,) = [r for r in runs if r.data.tags.get("kind") == "eval"
                 and r.data.tags.get("method") == method]
    return [(m.step, m.value) for m in client.get_metric_history(nested.info.run_id, metric)]


def test_eval_of_a_run(tiny_model, tmp_path, ray_cluster, local_lm_eval_task):
    from temporal_ray.evaluate.driver import run_eval
    from temporal_ray.miniature.tiny_model import build_tiny_model
    from temporal_ray.run.session import ConfigChangedError

    m1 = str(build_tiny_model(tmp_path / "other", seed=1))
    run_dir = tmp_path / "run"
    make_run(run_dir, tiny_model, m1)
    # AlpacaEval's own prompts name their source dataset; so do these.
    heldout = [{**row, "dataset": row["family"]} for row in heldout_rows(make_tasks(8, seed=5))]
    write_jsonl(heldout, tmp_path / "heldout.jsonl")
    base = [f"model.path={tiny_model}", f"data.prompts={tmp_path}/heldout.jsonl",
            f"storage.run_dir={run_dir}", "engine.actors=1", "engine.batch_size=16",
            f"eval.prompts={tmp_path}/heldout.jsonl", "eval.max_new_tokens=8"]
    rule = ["eval.judge.kind=rule", "eval.judge.rule=temporal_ray.miniature.tasks:pairwise_verdict",
            "eval.humaneval=2", "eval.humaneval_max_new_tokens=16"]
    results = run_eval(load_config(None, base + rule))

    out = run_dir / "evaluation"
    (answers_dir,) = (run_dir / "eval_answers").iterdir()  # one set of answer requests
    assert [r["name"] for r in results["checkpoints"]] == ["m0", "m1"]
    m0_row, m1_row = results["checkpoints"]
    assert m0_row["winrate"] is None and m1_row["dpo_runs"] == 1
    # The exact judge by hand: grade both stored answers of each prompt.
    answers = {name: {r["prompt_id"]: r for r in read_rows(
        str(answers_dir / name / "answers.parquet")) if r["role"] == "heldout"}
        for name in ("m0", "m1")}
    assert set(answers["m0"]) == set(answers["m1"]) == {r["prompt_id"] for r in heldout}
    prefs = []
    for row in heldout:
        task = Task(row["family"], row["prompt"], row["answer"])
        mine = grade(task, answers["m1"][row["prompt_id"]]["response"])
        theirs = grade(task, answers["m0"][row["prompt_id"]]["response"])
        prefs.append(1.0 if mine > theirs else 0.0 if mine < theirs else 0.5)
    rate = m1_row["winrate"]
    assert (rate["wins"], rate["ties"], rate["losses"]) == (
        prefs.count(1.0), prefs.count(0.5), prefs.count(0.0))
    assert rate["win_rate"] == pytest.approx(sum(prefs) / len(prefs))
    assert rate["prompts"] == 8 and rate["unparsed"] == 0
    assert rate["mean_model_length"] == pytest.approx(
        sum(a["response_tokens"] for a in answers["m1"].values()) / 8)
    # The intervals: these preferences resampled with these length differences.
    expected = win_rate_intervals(prefs, [
        answers["m1"][r["prompt_id"]]["response_tokens"]
        - answers["m0"][r["prompt_id"]]["response_tokens"] for r in heldout])
    assert rate["win_rate_ci"] == expected["win_rate"]
    assert rate["length_controlled_win_rate_ci"] == expected["length_controlled_win_rate"]
    assert rate["win_rate_ci"]["low"] <= rate["win_rate"] <= rate["win_rate_ci"]["high"]
    # AlpacaEval's model_outputs.json of each side: the stored answers, in prompt order.
    for row, name in zip(results["checkpoints"], ("m0", "m1")):
        assert row["alpaca_eval"] == f"alpaca_eval/{name}/model_outputs.json"
        assert json.loads((out / row["alpaca_eval"]).read_text()) == [
            {"instruction": r["prompt"], "output": answers[name][r["prompt_id"]]["response"],
             "generator": f"run/{name}", "dataset": r["family"]} for r in heldout]
    verdicts = read_rows(str(out / "verdicts" / "m1" / "verdicts.parquet"))
    assert sorted((v["prompt_id"], v["model_first"]) for v in verdicts) == sorted(
        (r["prompt_id"], first) for r in heldout for first in (True, False))
    # HumanEval: two problems answered and executed; a random model passes neither.
    for row in results["checkpoints"]:
        assert row["humaneval"]["problems"] == 2
        assert sum(row["humaneval"]["outcomes"].values()) == 2
        assert row["humaneval"]["pass_at_1"] == 0.0
        assert len(row["humaneval"]["sandbox"]) == 1  # the isolation in force, said once
    executions = read_rows(str(out / "humaneval" / "m1" / "executions.parquet"))
    assert sorted(e["task_id"] for e in executions) == ["HumanEval/0", "HumanEval/1"]
    # The report.
    saved = json.loads((out / "results.json").read_text())
    assert saved["checkpoints"][1]["winrate"]["win_rate"] == rate["win_rate"]
    report = (out / "report.md").read_text()
    assert "| Self-Rewarding M1 | 1 |" in report and "![evaluation](report.png)" in report
    ci = rate["win_rate_ci"]
    assert f"| {rate['win_rate']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}] |" in report
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"

    # Tracked in the run's MLflow store: M1's numbers at its DPO runs, the report attached.
    eval_curve = tracked_eval(run_dir, "self_rewarding", "eval/winrate.win_rate")
    assert eval_curve == [(1, rate["win_rate"])]
    assert tracked_eval(run_dir, "m0", "eval/humaneval.pass_at_1") == [(0, 0.0)]

    # A rerun reuses every stage and logs no point twice; a changed eval section is refused.
    def manifests() -> dict:
        return {p: p.read_text() for p in run_dir.glob("eval*/**/manifest.json")}

    finished = manifests()
    assert len(finished) == 2 + 1 + 2  # answers x2, verdicts x1, humaneval x2
    assert run_eval(load_config(None, base + rule))["checkpoints"] == results["checkpoints"]
    assert manifests() == finished
    assert tracked_eval(run_dir, "self_rewarding", "eval/winrate.win_rate") == eval_curve
    with pytest.raises(ConfigChangedError, match="eval.max_new_tokens"):
        run_eval(load_config(None, base + rule[:2] + ["eval.max_new_tokens=9"]))

    # The model's own judge with the pairwise prompt, in another output directory: the same
    # answers are reused, not generated again. And an lm-eval task on local data, in a Ray task.
    own = run_eval(load_config(None, base + rule[2:] + [
        "eval.output=evaluation_own", "eval.checkpoints=[m1]", "eval.judge.max_new_tokens=8",
        "eval.lm_eval_tasks=[toy_mc]", f"eval.lm_eval_include_path={local_lm_eval_task}"]))
    assert {p: t for p, t in manifests().items() if "eval_answers" in str(p)} == {
        p: t for p, t in finished.items() if "eval_answers" in str(p)}
    (row,) = own["checkpoints"]
    assert row["lm_eval"]["toy_mc"]["sample_len"] == 3
    assert "toy_mc acc" in (run_dir / "evaluation_own" / "report.md").read_text()
    verdicts = read_rows(str(run_dir / "evaluation_own" / "verdicts" / "m1" /
                             "verdicts.parquet"))
    assert len(verdicts) == 16 and all(isinstance(v["judgement"], str) for v in verdicts)
    parsed = {v["prompt_id"] for v in verdicts if order_score(v["verdict"], True) is not None}
    assert row["winrate"]["unparsed"] == 8 - len(parsed)

    # HumanEval sampled 3 times a problem, for M0 alone (the reference: nothing to judge).
    sampled = run_eval(load_config(None, base + [
        "eval.output=evaluation_sampled", "eval.checkpoints=[m0]", "eval.max_prompts=1",
        "eval.humaneval=1", "eval.humaneval_samples=3", "eval.humaneval_max_new_tokens=16"]))
    (row,) = sampled["checkpoints"]
    assert row["humaneval"]["samples"] == 3 and row["humaneval"]["problems"] == 1
    assert row["humaneval"]["pass_at_1"] == 0.0 and "pass_at_10" not in row["humaneval"]
    executions = read_rows(str(run_dir / "evaluation_sampled" / "humaneval" / "m0" /
                               "executions.parquet"))
    assert sorted((e["task_id"], e["sample_index"]) for e in executions) == [
        ("HumanEval/0", k) for k in range(3)]
    assert "| 0.000 |" in (run_dir / "evaluation_sampled" / "report.md").read_text()


def test_sampled_humaneval_requests_are_seeded_as_training_samples():
    from temporal_ray.config import EvalConfig
    from temporal_ray.evaluate.driver import answer_requests

    prompts = [{"prompt_id": "p", "prompt": "hi"}]
    problems = [{"prompt_id": "HumanEval/0", "prompt": "code"}]
    greedy = answer_requests(prompts, problems, EvalConfig(), seed=7)
    assert [r["sampling_params"]["temperature"] for r in greedy] == [0.0, 0.0]
    sampled = answer_requests(prompts, problems, EvalConfig(
        humaneval_samples=3, humaneval_temperature=0.6), seed=7)
    assert sampled[0] == greedy[0]  # held-out answers stay greedy
    assert [(r["sample_index"], r["sampling_params"]["seed"], r["sampling_params"]["temperature"],
             r["sampling_params"]["top_p"]) for r in sampled[1:]] == [
        (k, derive_seed(7, "humaneval", "HumanEval/0", k), 0.6, 0.95) for k in range(3)]


def test_eval_of_a_run_on_vllm(tiny_model, tmp_path, ray_cluster):
    """The same evaluation through vLLM (its CPU build here): each checkpoint's answers, and
    the checkpoint judging itself with the pairwise prompt, from `engine.kind: vllm` alone, on
    one kept engine (engine.keep_alive: M1's weights loaded in place after M0's answers)."""
    pytest.importorskip("vllm", reason="vLLM is not installed (make install adds its CPU build)")
    from temporal_ray.evaluate.driver import run_eval
    from temporal_ray.miniature.tiny_model import build_tiny_model

    run_dir = tmp_path / "run"
    make_run(run_dir, tiny_model, str(build_tiny_model(tmp_path / "other", seed=1)))
    heldout = heldout_rows(make_tasks(6, seed=5))
    write_jsonl(heldout, tmp_path / "heldout.jsonl")
    results = run_eval(load_config(None, [
        f"model.path={tiny_model}", f"data.prompts={tmp_path}/heldout.jsonl",
        f"storage.run_dir={run_dir}", "engine.kind=vllm", "engine.actors=1",
        "engine.keep_alive=true", "engine.batch_size=16", f"eval.prompts={tmp_path}/heldout.jsonl",
        "eval.max_new_tokens=8", "eval.judge.max_new_tokens=8", "eval.humaneval=2",
        "eval.humaneval_max_new_tokens=16"]))

    ids = sorted(r["prompt_id"] for r in heldout)
    (answers_dir,) = (run_dir / "eval_answers").iterdir()
    for name in ("m0", "m1"):  # every request answered once, with its token count
        rows = read_rows(str(answers_dir / name / "answers.parquet"))
        assert sorted((r["role"], r["prompt_id"]) for r in rows) == sorted(
            [("heldout", i) for i in ids] + [("humaneval", f"HumanEval/{i}") for i in (0, 1)])
        assert all(1 <= r["response_tokens"] <= (8 if r["role"] == "heldout" else 16)
                   for r in rows)
    verdicts = read_rows(str(run_dir / "evaluation" / "verdicts" / "m1" / "verdicts.parquet"))
    assert sorted((v["prompt_id"], v["model_first"]) for v in verdicts) == sorted(
        (i, first) for i in ids for first in (True, False))
    assert all(isinstance(v["judgement"], str) for v in verdicts)
    m0_row, m1_row = results["checkpoints"]
    rate = m1_row["winrate"]
    assert m0_row["winrate"] is None and rate["prompts"] == len(ids)
    assert rate["wins"] + rate["ties"] + rate["losses"] + rate["unparsed"] == len(ids)
    assert all(row["humaneval"]["problems"] == 2 for row in results["checkpoints"])
    report = (run_dir / "evaluation" / "report.md").read_text()
    assert "| model | DPO runs | win rate | LC win rate | W / T / L | unparsed |" in report
    assert "| Self-Rewarding M1 | 1 |" in report and "(vllm engine)" in report
