"""`temporal-ray eval`: every checkpoint of a run against a reference model (M0 by default).

    checkpoints (checkpoints.py) + held-out prompts
      -> answers:          greedy answers to the prompts (and HumanEval problems: greedy, or
                           eval.humaneval_samples sampled), one pass of the checkpoint's
                           engine pool, the same Ray Data pools as training; kept in
                           <run_dir>/eval_answers/<requests hash>/<name>, shared by
                           evaluations that differ only in judge or reference
      -> alpaca_eval/<name>/model_outputs.json: the held-out answers for AlpacaEval
                           (alpaca_export.py)
      -> verdicts/<name>:  the pairwise judge in both orders (verdicts.py) -> win rates with
                           length control (winrate.py) and bootstrap intervals (intervals.py)
      -> humaneval/<name>: completions executed in the sandbox, in Ray tasks -> pass@k
                           (humaneval.py)
      -> lm_eval/<name>:   lm-evaluation-harness, where installed with its datasets
      -> results.json, report.md, report.png (report.py)

Everything else lives under <storage.run_dir>/<eval.output>/; every step is a stage, so a
rerun resumes, and a rerun whose eval section changed is refused unless forced. Stages are
found by checkpoint name: after retraining a run, delete its evaluation directories.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from temporal_ray.analysis.bootstrap import LEVEL, RNG_SEED
from temporal_ray.config import Config, EvalConfig
from temporal_ray.core.requests import candidate_requests
from temporal_ray.engines.kept_pool import KeptPools
from temporal_ray.engines.pool import EnginePool, run_engine_pool
from temporal_ray.engines.preflight import drop_overlong
from temporal_ray.evaluate import alpaca_export, humaneval
from temporal_ray.evaluate.checkpoints import Checkpoint, discover_checkpoints, select
from temporal_ray.evaluate.intervals import RESAMPLES
from temporal_ray.evaluate.lm_eval_hook import LmEvalUnavailable, missing, run_lm_eval
from temporal_ray.evaluate.report import markdown, plot, table
from temporal_ray.evaluate.verdicts import verdict_stage
from temporal_ray.inputs.load import load_eval_prompts
from temporal_ray.run.session import absolute, check_config, eval_paths, start_ray
from temporal_ray.storage.files import read_rows, write_rows
from temporal_ray.storage.lock import RunLock
from temporal_ray.storage.run_dir import RunDir
from temporal_ray.terminal import echo
from temporal_ray.tracking import Tracker

logger = logging.getLogger(__name__)

HELDOUT, HUMANEVAL = "heldout", "humaneval"


def answer_requests(prompts: list[dict[str, Any]], problems: list[dict[str, Any]],
                    ev: EvalConfig, seed: int) -> list[dict[str, Any]]:
    """One greedy request per held-out prompt; per HumanEval problem one greedy request, or
    eval.humaneval_samples sampled ones, each seeded as training's samples are."""
    n = ev.humaneval_samples
    temperature, top_p = (0.0, 1.0) if n == 1 else (ev.humaneval_temperature, ev.humaneval_top_p)
    requests = []
    for row in prompts:
        requests += candidate_requests(row, HELDOUT, 1, 0.0, 1.0, ev.max_new_tokens, seed)
    for row in problems:
        requests += candidate_requests(row, HUMANEVAL, n, temperature, top_p,
                                       ev.humaneval_max_new_tokens, seed)
    # Only the columns every request shares (a prompt row's own fields stay in the driver).
    keep = ("prompt_id", "prompt", "system", "role", "sample_index", "messages",
            "sampling_params")
    return [{k: r[k] for k in keep} for r in requests]


def answers_dir(root: str, requests: list[dict[str, Any]]) -> RunDir:
    """Where answers to exactly these requests live: <run_dir>/eval_answers/<hash of the
    requests (messages and sampling)>/. Evaluations that differ only in their judge or
    reference (another eval.output) share them instead of generating again."""
    key = hashlib.sha256(json.dumps(requests, sort_keys=True).encode()).hexdigest()[:16]
    return RunDir(f"{root}/eval_answers/{key}")


def answer_stage(out: RunDir, checkpoint: Checkpoint, requests: list[dict[str, Any]],
                 cfg: Config, pools: KeptPools) -> list[dict[str, Any]]:
    """The checkpoint's answers ({prompt_id, role, sample_index, response, response_tokens};
    answers stored before sample_index was kept lack it: sample 0), one pool pass (a stage of
    the answers directory `out`)."""
    import ray.data

    def produce(tmp: str) -> dict[str, Any]:
        outputs = run_engine_pool(ray.data.from_items(requests), checkpoint.path,
                                  EnginePool(cfg.engine, kept=pools), rows=len(requests))
        rows = [{"prompt_id": r["prompt_id"], "role": r["role"],
                 "sample_index": int(r["sample_index"]), "response": r["generated_text"],
                 "response_tokens": int(r["num_generated_tokens"])}
                for r in outputs.select_columns(["prompt_id", "role", "sample_index",
                                                 "generated_text", "num_generated_tokens"]
                                                ).take_all()]
        write_rows(rows, f"{tmp}/answers.parquet")
        held = [r["response_tokens"] for r in rows if r["role"] == HELDOUT]
        return {"answers": len(rows), "mean_tokens": sum(held) / len(held) if held else None}

    stage = out.run_stage(checkpoint.name, produce, kind="eval_answers",
                          model=checkpoint.path)
    return read_rows(f"{stage.path}/answers.parquet")


def held_out(answers: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The held-out answer rows by prompt_id."""
    return {r["prompt_id"]: r for r in answers if r["role"] == HELDOUT}


def humaneval_stage(out: RunDir, checkpoint: Checkpoint, answers: list[dict[str, Any]],
                    problems: dict[str, dict[str, Any]], timeout: float,
                    samples: int) -> dict[str, Any]:
    """pass@k of the checkpoint's completions (`samples` a problem), executed in sandboxed
    subprocesses inside Ray tasks (never on the driver); a problem it did not answer (too
    long for the context) counts as failed in each of its samples."""
    import ray

    by_sample: dict[int, dict[str, str]] = {}
    for r in answers:
        if r["role"] == HUMANEVAL:
            by_sample.setdefault(int(r.get("sample_index", 0)), {})[r["prompt_id"]] = \
                humaneval.completion_from_response(problems[r["prompt_id"]], r["response"])

    def produce(tmp: str) -> dict[str, Any]:
        task = ray.remote(num_cpus=1)(humaneval.execute)
        pending = []
        for index, completions in sorted(by_sample.items()):
            ids = sorted(completions)
            pending += [task.remote({i: problems[i] for i in ids[c:c + 16]},
                                    {i: completions[i] for i in ids[c:c + 16]}, timeout, index)
                        for c in range(0, len(ids), 16)]
        results = [e for chunk in ray.get(pending) for e in chunk]
        answered = {i for completions in by_sample.values() for i in completions}
        results += [humaneval.Execution(i, False, "too_long", "prompt exceeds the context",
                                        sample_index=k)
                    for i in sorted(set(problems) - answered) for k in range(samples)]
        write_rows([vars(e) for e in results], f"{tmp}/executions.parquet")
        return {"humaneval": {"problems": len(problems), "samples": samples,
                              **humaneval.pass_at_k_rates(results),
                              "outcomes": dict(Counter(e.outcome for e in results)),
                              "sandbox": sorted({e.isolation for e in results} - {""})}}

    return out.run_stage(f"humaneval/{checkpoint.name}", produce, kind="eval_humaneval",
                         model=checkpoint.path).manifest["humaneval"]


def lm_eval_stage(out: RunDir, checkpoint: Checkpoint, cfg: Config) -> dict[str, Any]:
    import ray

    ev, engine = cfg.eval, cfg.engine
    # Offline from the worker's start: `datasets` reads the switch when it is imported.
    task = ray.remote(run_lm_eval).options(
        num_cpus=max(engine.cpus_per_actor, 1), num_gpus=engine.gpus_per_actor,
        runtime_env={"env_vars": {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}})
    return out.run_stage(f"lm_eval/{checkpoint.name}", lambda tmp: {"lm_eval": ray.get(
        task.remote(checkpoint.path, ev.lm_eval_tasks, ev.lm_eval_limit,
                    engine.gpus_per_actor > 0, engine.kind,
                    absolute(ev.lm_eval_include_path) if ev.lm_eval_include_path else None))},
        kind="eval_lm_eval", model=checkpoint.path).manifest["lm_eval"]


@dataclass
class EvalInputs:
    """What every checkpoint is evaluated on, checked against the context once."""

    prompts: list[dict[str, Any]]
    problems: dict[str, dict[str, Any]]
    requests: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    run_lm_eval: bool = False


def prepare_inputs(cfg: Config, reference: Checkpoint) -> EvalInputs:
    """Held-out prompts and HumanEval problems as answer requests. All checkpoints of a run
    share M0's tokenizer and context, so one budget check serves them all."""
    ev, context = cfg.eval, cfg.engine.max_model_len
    heldout = load_eval_prompts(ev.prompts, ev.prompt_field, ev.max_prompts)
    prompts, too_long = drop_overlong(heldout, reference.path, ev.max_new_tokens, context)
    shipped = humaneval.load_problems() if ev.humaneval else {}
    problems = dict(list(shipped.items())[: None if ev.humaneval < 0 else ev.humaneval])
    problem_rows, _ = drop_overlong(
        [{"prompt_id": i, "prompt": humaneval.chat_prompt(p)} for i, p in problems.items()],
        reference.path, ev.humaneval_max_new_tokens, context)
    inputs = EvalInputs(prompts, problems,
                        answer_requests(prompts, problem_rows, ev, cfg.generation.seed))
    if too_long:
        inputs.notes.append(f"{too_long} held-out prompts were longer than the context minus "
                            "eval.max_new_tokens and were left out")
    if len(problem_rows) < len(problems):
        inputs.notes.append(f"{len(problems) - len(problem_rows)} of {len(problems)} HumanEval "
                            "problems do not fit the context: counted as failed")
    reason = missing() if ev.lm_eval_tasks else None
    if reason:
        inputs.notes.append(f"lm-eval tasks {', '.join(ev.lm_eval_tasks)} skipped: {reason}")
        logger.warning(inputs.notes[-1])
    inputs.run_lm_eval = bool(ev.lm_eval_tasks) and not reason
    return inputs


def evaluate_checkpoint(out: RunDir, answers_out: RunDir, checkpoint: Checkpoint,
                        reference: Checkpoint, reference_answers: list[dict[str, Any]],
                        inputs: EvalInputs, cfg: Config, pools: KeptPools) -> dict[str, Any]:
    """One checkpoint's row of the report: answers (exported for AlpacaEval), win rate,
    pass@k, lm-eval metrics."""
    logger.info("eval: %s (%s)", checkpoint.name, checkpoint.path)
    ev, is_reference = cfg.eval, checkpoint == reference
    answers = (reference_answers if is_reference
               else answer_stage(answers_out, checkpoint, inputs.requests, cfg, pools))
    held = [a["response_tokens"] for a in answers if a["role"] == HELDOUT]
    row = {"name": checkpoint.name, "method": checkpoint.method,
           "iteration": checkpoint.iteration, "dpo_runs": checkpoint.dpo_runs,
           "path": checkpoint.path,
           "answers": {"prompts": len(held),
                       "mean_tokens": sum(held) / len(held) if held else None},
           "alpaca_eval": export_answers(out, checkpoint, inputs.prompts, answers, cfg),
           "winrate": None if is_reference else verdict_stage(
               out, checkpoint, inputs.prompts, held_out(answers), held_out(reference_answers),
               cfg, pools),
           "humaneval": humaneval_stage(out, checkpoint, answers, inputs.problems,
                                        ev.humaneval_timeout, ev.humaneval_samples)
           if inputs.problems else None,
           "lm_eval": None}
    if inputs.run_lm_eval:
        try:
            row["lm_eval"] = lm_eval_stage(out, checkpoint, cfg)
        except LmEvalUnavailable as err:
            inputs.notes.append(f"{checkpoint.name}: {err}")
            logger.warning(inputs.notes[-1])
    return row


def export_answers(out: RunDir, checkpoint: Checkpoint, prompts: list[dict[str, Any]],
                   answers: list[dict[str, Any]], cfg: Config) -> str:
    """The checkpoint's held-out answers as alpaca_eval/<name>/model_outputs.json (its
    generator: <run directory's name>/<checkpoint name>); returns that relative path."""
    relative = f"alpaca_eval/{checkpoint.name}/{alpaca_export.FILE}"
    run_name = cfg.storage.run_dir.rstrip("/").rsplit("/", 1)[-1]
    out.write_text(relative, alpaca_export.alpaca_json(alpaca_export.alpaca_outputs(
        prompts, held_out(answers), f"{run_name}/{checkpoint.name}")))
    return relative


def describe_settings(cfg: Config, root: str, reference: Checkpoint,
                      inputs: EvalInputs) -> dict[str, Any]:
    ev, judge = cfg.eval, cfg.eval.judge
    return {
        "run": root, "reference": f"{reference.name} ({reference.path})",
        "held-out prompts": f"{len(inputs.prompts)} from {ev.prompts}",
        "judge": (f"rule {judge.rule}" if judge.kind == "rule" else
                  f"{judge.model or 'each checkpoint judges itself'} "
                  f"({(judge.engine or cfg.engine).kind} engine), both orders"),
        "answers": f"greedy, at most {ev.max_new_tokens} tokens",
        "win-rate intervals": f"{LEVEL:.0%} percentile bootstrap over prompts, {RESAMPLES} "
                              f"resamples, seed {RNG_SEED}",
        "HumanEval problems": len(inputs.problems),
        "HumanEval samples": ("1, greedy" if ev.humaneval_samples == 1 else
                              f"{ev.humaneval_samples} a problem, temperature "
                              f"{ev.humaneval_temperature}, top_p {ev.humaneval_top_p}"),
        "lm-eval tasks": ", ".join(ev.lm_eval_tasks) or "none",
    }


def write_report(out: RunDir, results: dict[str, Any]) -> None:
    out.write_text("results.json", json.dumps(results, indent=2, default=str))
    out.write_text("report.md", markdown(results))
    with tempfile.TemporaryDirectory() as tmp:
        plot(results, f"{tmp}/report.png")
        with open(f"{tmp}/report.png", "rb") as f:
            out.write_bytes("report.png", f.read())


REPORT_FILES = ("report.png", "report.md", "results.json")


def track_results(cfg: Config, root: str, out: RunDir, results: dict[str, Any]) -> None:
    """The evaluation as a tracked run in the training run's store (named after
    eval.output): per method a nested run with each checkpoint's numbers as `eval/...` at
    step = its DPO runs, so they line up with the training curves; the report as artifacts.
    Run again, it logs nothing twice (the backends skip known points)."""
    tracker = Tracker.open(cfg, out, cfg.eval.output, {"kind": "eval"}, store=RunDir(root))
    methods: dict[str, list[dict[str, Any]]] = {}
    for row in results["checkpoints"]:
        methods.setdefault(row["method"] or row["name"], []).append(row)  # M0: ""
    for method, rows in methods.items():
        tracked = tracker.child(method, {"method": method, "kind": "eval"}, method=method)
        for row in rows:
            tracked.log_metrics("eval", {key: row[key] for key in
                                         ("answers", "winrate", "humaneval", "lm_eval")
                                         if row[key]}, step=row["dpo_runs"])
        tracked.finish()
    if out.is_local():  # the backends upload local files
        for name in REPORT_FILES:
            tracker.log_artifact(out.path(name))
    tracker.finish()


def run_eval(cfg: Config, force: bool = False) -> dict[str, Any]:
    """Evaluate (or resume evaluating) the run in storage.run_dir; returns the results."""
    if cfg.eval.humaneval:
        humaneval.require_package()  # a missing extra stops here, before any model work
    cfg = eval_paths(cfg)
    ev = cfg.eval
    root = absolute(cfg.storage.run_dir)
    found = discover_checkpoints(root)
    checkpoints = select(found, ev.checkpoints)
    reference_path = ev.reference or found[0].path
    reference = next((c for c in found if c.path == reference_path),
                     Checkpoint("reference", "", 0, reference_path))
    inputs = prepare_inputs(cfg, reference)
    out, answers_out = RunDir(f"{root}/{ev.output}"), answers_dir(root, inputs.requests)
    start_ray(cfg)
    with RunLock(out), RunLock(answers_out), KeptPools() as pools:
        check_config(out, cfg, force, sections=("eval",))
        reference_answers = answer_stage(answers_out, reference, inputs.requests, cfg, pools)
        if reference not in checkpoints:  # its answers are AlpacaEval's reference outputs
            export_answers(out, reference, inputs.prompts, reference_answers, cfg)
        rows = [evaluate_checkpoint(out, answers_out, checkpoint, reference, reference_answers,
                                    inputs, cfg, pools)
                for checkpoint in checkpoints]
        results = {"settings": describe_settings(cfg, root, reference, inputs),
                   "reference": reference.name, "checkpoints": rows, "notes": inputs.notes}
        write_report(out, results)
        track_results(cfg, root, out, results)
    echo(table(results))
    for note in inputs.notes:
        echo(f"note: {note}")
    echo(f"report: {out.uri}/report.md")
    return results

