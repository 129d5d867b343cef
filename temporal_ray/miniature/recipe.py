"""`temporal-ray miniature` (`make run`): the paper in miniature, on a CPU, in minutes.

    tiny base model + synthetic task data (tasks.py)
      -> M0 = SFT(base, IFT + EFT): the model answers and judges itself
      -> Self-Rewarding and Temporal Self-Rewarding from M0 at equal compute (run/compare.py)
      -> per checkpoint: held-out accuracy and judge agreement (ground_truth.py)
      -> per iteration: score gap, feature cosine, DPO margin and grad norm (analysis/collapse.py)
      -> report.md + report.png + results.json (report.py)

Everything lives under storage.run_dir; every step is a stage, so a rerun resumes.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from typing import Any

from temporal_ray.analysis.collapse import iteration_collapse
from temporal_ray.config import ConfigError, DataSource, Method
from temporal_ray.engines.kept_pool import KeptPools
from temporal_ray.inputs.tables import read_records
from temporal_ray.miniature.config import MiniatureRunConfig
from temporal_ray.miniature.ground_truth import check_checkpoint, form_only_judge
from temporal_ray.miniature.report import markdown, plot, terminal_summary
from temporal_ray.miniature.tasks import answer_key
from temporal_ray.miniature.toy_data import (
    build_toy_data,
    judge_check_rows,
    load_tasks,
    write_jsonl,
)
from temporal_ray.run.compare import method_config, run_comparison
from temporal_ray.run.compute import method_compute
from temporal_ray.run.methods import METHODS
from temporal_ray.run.session import absolute, start_ray
from temporal_ray.run.sft import run_sft
from temporal_ray.storage.lock import RunLock
from temporal_ray.storage.run_dir import RunDir
from temporal_ray.terminal import echo
from temporal_ray.tracking import Tracker

logger = logging.getLogger(__name__)

# The judge prompt of the miniature: the tiny model's context (512 tokens) cannot hold the
# additive rubric (~900 tokens), so a short one with the same "Score: k" ending stands in.
TOY_JUDGE_TEMPLATE = str(resources.files("temporal_ray") / "assets" / "toy_judge.txt")


def _base_model(run: RunDir, cfg: MiniatureRunConfig) -> str:
    from temporal_ray.miniature.tiny_model import build_tiny_model

    mini = cfg.miniature
    return run.run_stage("base_model", lambda tmp: {"path": str(build_tiny_model(
        tmp, seed=mini.seed, hidden_size=mini.hidden_size, num_layers=mini.layers))},
        kind="base_model").path


def _data(run: RunDir, cfg: MiniatureRunConfig) -> str:
    mini = cfg.miniature
    n_prompts = cfg.data.prompts_per_iteration * max(mini.iterations.values())

    def produce(tmp: str) -> dict[str, Any]:
        paths = build_toy_data(tmp, mini.seed, mini.ift, mini.eft, n_prompts, mini.heldout,
                               judge_template=open(TOY_JUDGE_TEMPLATE).read(),
                               families=mini.families, digit_lengths=mini.digit_lengths,
                               eft_weights=mini.eft_mix.weights())
        heldout = load_tasks(paths["heldout"])
        check = judge_check_rows(heldout, mini.seed + 3)
        write_jsonl(check, f"{tmp}/judge_check.jsonl")
        return {"ift": mini.ift, "eft": mini.eft, "prompts": n_prompts,
                "heldout": mini.heldout,
                "form_only_judge": form_only_judge(check, answer_key(heldout))}

    return run.run_stage("data", produce, kind="toy_data").path


def _data_manifest(run: RunDir) -> dict[str, Any]:
    stage = run.finished("data")
    return stage.manifest if stage else {}


def miniature_config(cfg: MiniatureRunConfig, root: str, base_model: str,
                     data: str) -> MiniatureRunConfig:
    """The paths the recipe owns: the SFT inputs and output, M0 and the prompt file."""
    judge = cfg.judge
    # With a rule judge too: the ground-truth check still measures the model's own judging.
    if not judge.prompt_template:
        judge = judge.model_copy(update={"prompt_template": TOY_JUDGE_TEMPLATE})
    return cfg.model_copy(update={
        "sft": cfg.sft.model_copy(update={
            "base_model": base_model, "output": f"{root}/sft",
            "data": [f"{data}/ift.jsonl", f"{data}/eft.jsonl"]}),
        "model": cfg.model.model_copy(update={"path": f"{root}/sft/model"}),
        "data": cfg.data.model_copy(update={"prompts": f"{data}/prompts.jsonl"}),
        "judge": judge,
    })


def _read_jsonl(path: str) -> list[dict[str, Any]]:
    return [obj for _, obj in read_records(DataSource(path=path), "miniature data file",
                                           "storage.run_dir")]


def evaluate(cfg: MiniatureRunConfig, root: str, data: str,
             checkpoints: dict[Method, list[str]], pools: KeptPools,
             tracker: Tracker | None = None) -> dict[str, Any]:
    """Ground truth per checkpoint (M0 once) and the collapse measurements per iteration;
    tracked in each method's run: eval/... per checkpoint (step k: M_k), collapse/... per
    iteration (step i)."""
    tracker = tracker or Tracker.off()
    evals = RunDir(f"{root}/eval")
    heldout = _read_jsonl(f"{data}/heldout.jsonl")
    check = _read_jsonl(f"{data}/judge_check.jsonl")
    rows, iterations = [], []
    for method, models in checkpoints.items():
        tracked = tracker.child(method.value, {"method": method.value}, method=method.value)
        for k, model in enumerate(models):
            name = "m0" if k == 0 else f"{method.value}/m{k}"
            if evals.finished(name) is None:
                logger.info("checking %s: held-out answers and judge agreement", name)
            checks = check_checkpoint(evals, name, model, heldout, check, cfg, pools)
            rows.append({"method": method.value, "index": k,
                         "compute": k * METHODS[method.value].dpo_runs,
                         "model": model, "answers": checks["answers"],
                         "judge": checks["judge"]})
            tracked.log_metrics("eval", {"answers": checks["answers"],
                                         "judge": checks["judge"]}, step=k)
        run = RunDir(method_config(cfg, method, len(models) - 1).storage.run_dir)
        for i in range(len(models) - 1):
            iterations.append({"method": method.value, **iteration_collapse(
                run, method.value, i, models[i], cfg.engine)})
            tracked.log_metrics("collapse", iterations[-1], step=i)
        tracked.finish()
    return {"checkpoints": rows, "iterations": iterations}


def measured_compute(cfg: MiniatureRunConfig,
                     checkpoints: dict[Method, list[str]]) -> dict[str, dict[str, Any]]:
    """Each method's tokens over the iterations it ran (run/compute.py), from its own run
    directory: the SFT of M0 (shared) and the ground-truth checks under eval/ (evaluation,
    not training) are not counted."""
    return {method.value: method_compute(
                RunDir(method_config(cfg, method, len(models) - 1).storage.run_dir),
                len(models) - 1)
            for method, models in checkpoints.items()}


def run_miniature(cfg: MiniatureRunConfig, force: bool = False) -> dict[str, Any]:
    """Run (or resume) the whole miniature; returns the results the report is made of."""
    if "://" in cfg.storage.run_dir:
        raise ConfigError("the miniature builds its model and data on local disk: set "
                          "storage.run_dir to a local path or a mounted volume")
    root = absolute(cfg.storage.run_dir)
    run = RunDir(root)
    with RunLock(run):
        base_model, data = _base_model(run, cfg), _data(run, cfg)
        cfg = miniature_config(cfg, root, base_model, data)
        tracker = Tracker.open(cfg, run, "miniature", {"kind": "miniature"})
    start_ray(cfg)
    run_sft(cfg, force=force, parent=tracker)
    checkpoints = run_comparison(cfg, cfg.miniature.iterations, force=force, parent=tracker)
    with KeptPools() as pools:
        results = evaluate(cfg, root, data, checkpoints, pools, tracker)
    results["form_only_judge"] = _data_manifest(run).get("form_only_judge")
    results["compute"] = measured_compute(cfg, checkpoints)
    mini = cfg.miniature
    results["settings"] = {
        "title": "The paper in miniature: Self-Rewarding vs Temporal Self-Rewarding",
        "domain": f"synthetic tasks ({', '.join(mini.families)}"
                  + (f", {mini.digit_lengths[0]}-{mini.digit_lengths[1]} digits"
                     if "sortd" in mini.families else "") + f"), seed {mini.seed}",
        "model": f"tiny Llama, hidden {mini.hidden_size}, {mini.layers} layers, random init",
        "M0": f"SFT on {mini.ift} IFT + {mini.eft} EFT rows",
        "iterations": ", ".join(f"{m.value} {n}" for m, n in mini.iterations.items()),
        "prompts per iteration": cfg.data.prompts_per_iteration,
        "samples per prompt (K)": cfg.generation.samples,
        "judge samples (J)": cfg.judge.samples,
        "held-out tasks": mini.heldout,
    }
    with RunLock(run):
        run.write_text("results.json", json.dumps(results, indent=2, default=str))
        run.write_text("report.md", markdown(results))
        plot(results, f"{root}/report.png")
        for name in ("report.png", "report.md", "results.json"):
            tracker.log_artifact(f"{root}/{name}")
        tracker.finish()
    echo(terminal_summary(results))
    echo(f"report: {root}/report.md")
    return results
