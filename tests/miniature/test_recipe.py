"""The paper in miniature, shortened for CI: the real recipe end to end (tiny base model,
synthetic data, SFT to M0 on two DeepSpeed workers, two Self-Rewarding iterations and one
temporal one at equal compute with the model as its own judge, ground-truth checks, collapse
measurements, compute counts, the report). Also covers the Self-Rewarding and the temporal
iteration's stages and checkpoints, and replaying stages (--redo / --until) to the same
bits. The run itself is conftest.py's ci_miniature, which is also the study's seed 0."""

from __future__ import annotations

import json

import pytest

from temporal_ray.config import Method
from temporal_ray.miniature.recipe import miniature_config, run_miniature
from temporal_ray.run.compare import method_config
from temporal_ray.run.driver import run_experiment
from temporal_ray.storage.files import read_rows

pytestmark = pytest.mark.slow

PROMPTS = 8  # conftest.py's CI_PROMPTS and CI_SAMPLES
SAMPLES = 3


def test_miniature_writes_a_report_with_every_section(ci_miniature, ray_cluster,
                                                      assert_trained_checkpoint):
    root, cfg, results = ci_miniature.root, ci_miniature.cfg, ci_miniature.results

    # M0 came from the SFT stage and both methods started from it.
    m0 = str(root / "sft" / "model")
    assert [c["model"] for c in results["checkpoints"] if c["index"] == 0] == [m0, m0]
    sft = json.loads((root / "sft" / "model" / "manifest.json").read_text())
    assert sft["examples"] == 600 and sft["loss_after"] < sft["loss_before"]

    # Self-Rewarding: present samples only, best vs worst, a trained checkpoint.
    sr = root / "self_rewarding" / "iter_0"
    stages = sorted(p.parent.name for p in sr.glob("*/manifest.json"))
    assert stages == ["candidates_present", "collapse", "model", "pairs", "prompts",
                      "scores_present"]
    pairs = read_rows(str(sr / "pairs" / "data"))
    assert pairs and all(p["chosen_role"] == p["rejected_role"] == "present" for p in pairs)
    assert all(p["chosen_score"] > p["rejected_score"] for p in pairs)
    assert_trained_checkpoint(sr / "model", m0)
    # Temporal: the same prompt chunk as Self-Rewarding's first iteration; every (prompt,
    # sample) of every role exactly once; phase 2 keeps the anchored rejected; both DPO runs
    # (M_f and M_1, each from M0) trained.
    prompts = {r["prompt_id"] for r in read_rows(str(sr / "prompts" / "data"))}
    temporal = root / "temporal" / "iter_0"
    assert {r["prompt_id"] for r in read_rows(str(temporal / "prompts" / "data"))} == prompts
    per_role = PROMPTS * SAMPLES
    for role in ("present", "past", "future"):
        rows = read_rows(str(temporal / f"candidates_{role}" / "data"))
        assert len(rows) == per_role and {r["role"] for r in rows} == {role}
        assert len({(r["prompt_id"], r["sample_index"]) for r in rows}) == per_role
    assert len(read_rows(str(temporal / "scores_present_past" / "data"))) == 2 * per_role
    for pairs_stage in ("pairs_anchored", "pairs_future_guided"):
        counts = json.loads((temporal / pairs_stage / "manifest.json").read_text())
        assert counts["pairs"] + sum(counts["dropped"].values()) == PROMPTS
        pairs = read_rows(str(temporal / pairs_stage / "data"))
        assert len(pairs) == counts["pairs"] > 0
        assert all(p["chosen_score"] > p["rejected_score"] for p in pairs)
    d1 = {p["prompt_id"]: p for p in read_rows(str(temporal / "pairs_anchored" / "data"))}
    for pair in read_rows(str(temporal / "pairs_future_guided" / "data")):
        assert pair["chosen_role"] in ("present", "future")
        if pair["prompt_id"] in d1:
            assert pair["rejected"] == d1[pair["prompt_id"]]["rejected"]
    assert_trained_checkpoint(temporal / "model_future", m0)
    assert_trained_checkpoint(temporal / "model", m0)

    # Ground truth for M0 and each method's checkpoints; collapse measurements for each
    # iteration.
    assert sorted((c["method"], c["index"], c["compute"]) for c in results["checkpoints"]) == [
        ("self_rewarding", 0, 0), ("self_rewarding", 1, 1), ("self_rewarding", 2, 2),
        ("temporal", 0, 0), ("temporal", 1, 2)]
    for checkpoint in results["checkpoints"]:
        assert checkpoint["answers"]["answers"] == 16
        assert 0.0 <= checkpoint["answers"]["accuracy"] <= 1.0
        assert checkpoint["judge"]["count"] == 16
    for row in results["iterations"]:
        pairs_stage = "pairs" if row["method"] == "self_rewarding" else "pairs_future_guided"
        assert row["count"] == len(read_rows(str(
            root / row["method"] / f"iter_{row['iteration']}" / pairs_stage / "data")))
        assert -1.0 <= row["cosine"] <= 1.0
        assert row["mean_gap"] > 0 and row["dpo_mean_grad_norm"] > 0

    # Compute, measured from each method's own stages (the ground-truth checks under eval/
    # are not counted): temporal generates for 3 roles on Self-Rewarding's first prompt chunk
    # (its prompt tokens 3 times) and trains twice in its one iteration.
    compute = results["compute"]
    assert set(compute) == {"self_rewarding", "temporal"}
    max_new = cfg.generation.max_new_tokens
    for method, counts in compute.items():
        iterations = 2 if method == "self_rewarding" else 1
        assert counts["stages_without_counts"] == [] and counts["iterations"] == iterations
        for key in ("generated_prompt_tokens", "generated_tokens", "judge_prompt_tokens",
                    "judge_generated_tokens", "dpo_forward_tokens", "dpo_backward_tokens",
                    "reference_forward_tokens"):
            assert isinstance(counts[key], int) and counts[key] > 0, (method, key)
        roles = 3 if method == "temporal" else 1
        assert counts["generated_tokens"] <= iterations * roles * PROMPTS * SAMPLES * max_new
        assert counts["dpo_backward_tokens"] < counts["dpo_forward_tokens"]
        candidates = [r for stage in (root / method).glob("iter_*/candidates_*")
                      for r in read_rows(str(stage / "data"))]
        assert counts["generated_tokens"] == sum(r["response_tokens"] for r in candidates)
    sr_counts, t_counts = compute["self_rewarding"], compute["temporal"]
    sr_first = json.loads((root / "self_rewarding" / "iter_0" / "candidates_present" /
                           "manifest.json").read_text())
    assert t_counts["generated_prompt_tokens"] == 3 * sr_first["generated_prompt_tokens"]
    assert (sr_counts["dpo_runs"], t_counts["dpo_runs"]) == (2, 2)
    assert 0.75 < t_counts["judge_prompt_tokens"] / sr_counts["judge_prompt_tokens"] < 2.25

    report = (root / "report.md").read_text()
    for section in ("## Findings", "## Checkpoints", "## Iterations", "report.png",
                    "## Compute per method", "| DPO runs | 2 | 2 | - |",
                    "| M0 (SFT) |", "| Self-Rewarding M2 |", "| Temporal M1 |",
                    "| Self-Rewarding | 0 |", "| Temporal | 0 |"):
        assert section in report
    assert (root / "report.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((root / "results.json").read_text())
    assert saved["settings"]["held-out tasks"] == 16 and saved["compute"] == compute
    summary = json.loads((root / "temporal" / "summary.json").read_text())
    assert summary["compute"] == t_counts

    assert_tracked_in_mlflow(root, results)

    # A rerun resumes: every stage is reused and the results are the same, and it continues
    # the same tracked runs without logging a point twice.
    assert run_miniature(cfg)["iterations"] == results["iterations"]
    assert_tracked_in_mlflow(root, results)

    # Replay from one stage of a method's run: --redo deletes it and every stage that
    # finished after it (they read it), --until stops once the named stage is done. The
    # replayed stages (a DPO run on two workers, generation, the judge, the pairs) give the
    # same bits: determinism on one machine (README: what differs across machines).
    resolved = miniature_config(cfg, str(root), str(root / "base_model"), str(root / "data"))
    replayed = ("model_future", "candidates_future", "scores_future", "pairs_future_guided")
    before = {p.parent.name: json.loads(p.read_text())["finished_at"]
              for p in temporal.glob("*/manifest.json")}
    first = {stage: stage_contents(temporal / stage) for stage in replayed}
    assert run_experiment(method_config(resolved, Method.TEMPORAL, 1),
                          redo="iter_0/model_future", until="iter_0/pairs_future_guided") == []
    after = {p.parent.name: json.loads(p.read_text())["finished_at"]
             for p in temporal.glob("*/manifest.json")}
    assert set(after) == set(before) - {"model", "collapse"}
    assert {stage for stage in after if after[stage] != before[stage]} == set(replayed)
    for stage in replayed:
        assert stage_contents(temporal / stage) == first[stage], stage


def stage_contents(stage_dir) -> list | dict:
    """What a stage produced: the rows of a data stage (in any order), or the bytes of a
    model's weights."""
    if (stage_dir / "data").exists():
        return sorted(read_rows(str(stage_dir / "data")), key=repr)
    return {p.name: p.read_bytes() for p in sorted(stage_dir.glob("*.safetensors"))}


def assert_tracked_in_mlflow(root, results):
    """The miniature's MLflow store (<run_dir>/mlruns), read with MLflow's client: one run for
    the experiment, SFT and each method nested in it, each stage nested in those; every DPO
    and SFT step as rank 0's metrics.json has it; the collapse measures and the ground truth
    per iteration and checkpoint; the report as artifacts; no (metric, step) twice."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"file://{root / 'mlruns'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == root.name]
    runs = client.search_runs([experiment.experiment_id])
    by_id = {r.info.run_id: r for r in runs}
    (top,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert top.info.run_name == "miniature" and top.info.status == "FINISHED"
    assert top.data.params["miniature.ift"] == "300"
    assert {a.path for a in client.list_artifacts(top.info.run_id)} >= {
        "report.png", "report.md", "results.json"}
    nested = {r.info.run_name: r for r in runs
              if r.data.tags.get("mlflow.parentRunId") == top.info.run_id}
    assert set(nested) == {"sft", "self_rewarding", "temporal"}

    def history(stage_dir):
        return json.loads((stage_dir / "metrics.json").read_text())["history"]

    def points(run, key):
        found = [(p.step, p.value) for p in client.get_metric_history(run.info.run_id, key)]
        assert len({step for step, _ in found}) == len(found), (run.info.run_name, key)
        return sorted(found)

    for stage_dir in [root / "sft" / "model", *root.glob("*/iter_*/model*")]:
        kind = "sft" if stage_dir.parent.name == "sft" else "dpo"
        method = stage_dir.parents[1].name
        (stage,) = [r for r in runs if r.data.tags.get("stage") == stage_dir.name
                    and r.data.tags.get("iteration") in (None, stage_dir.parent.name[5:])
                    and by_id[r.data.tags["mlflow.parentRunId"]].info.run_name
                    == ("sft" if kind == "sft" else method)]
        steps = history(stage_dir)
        assert steps and points(stage, f"{kind}/loss") == [(h["step"], h["loss"])
                                                           for h in steps]
        assert len(points(stage, f"{kind}/tokens_per_s")) == len(steps)
    for method, run in nested.items():
        if method == "sft":
            continue
        dpo_steps = sum(len(history(d)) for d in (root / method).glob("iter_*/model*"))
        assert [s for s, _ in points(run, "dpo/loss")] == list(range(1, dpo_steps + 1))
        collapse = [r for r in results["iterations"] if r["method"] == method]
        assert points(run, "collapse/mean_gap") == [(r["iteration"], r["mean_gap"])
                                                    for r in collapse]
        checks = sorted((c["index"], c["answers"]["accuracy"])
                        for c in results["checkpoints"] if c["method"] == method)
        assert points(run, "eval/answers.accuracy") == checks
