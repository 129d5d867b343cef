"""`temporal-ray eval`: every checkpoint of a run against a reference model (M0 by default).

    checkpoints (checkpoints.py) + held-out prompts
      -> answers:          greedy answers to the prompts (and HumanEval problems), one pass of
                           the checkpoint's engine pool, the same Ray Data pools as training;
                           kept in <run_dir>/eval_answers/<requests hash>/<name>, shared by
                           evaluations that differ only in judge or reference
      -> verdicts/<name>:  the pairwise judge in both orders (pairwise.py) -> win rates with
                           length control (winrate.py)
      -> humaneval/<name>: completions executed in the sandbox, in Ray tasks (humaneval.py)
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

from temporal_ray.config import Config, EvalConfig
from temporal_ray.core.prompts import PromptFileError, read_jsonl, text_field
from temporal_ray.core.requests import candidate_requests
from temporal_ray.engines.kept_pool import KeptPools
from temporal_ray.engines.pool import EnginePool, run_engine_pool
from temporal_ray.engines.preflight import ContextBudget, drop_overlong
from temporal_ray.evaluate import humaneval
from temporal_ray.evaluate.checkpoints import Checkpoint, discover_checkpoints, select
from temporal_ray.evaluate.lm_eval_hook import LmEvalUnavailable, missing, run_lm_eval
from temporal_ray.evaluate.pairwise import load_pairwise_template, verdict_requests
from temporal_ray.evaluate.report import markdown, plot, table
from temporal_ray.evaluate.winrate import parse_verdict, prompt_preference, win_rate
from temporal_ray.run.session import absolute, check_config, eval_paths, start_ray
from temporal_ray.stages.judge import load_rule
from temporal_ray.storage.files import read_rows, write_rows
from temporal_ray.storage.lock import RunLock
from temporal_ray.storage.run_dir import RunDir
from temporal_ray.terminal import echo
from temporal_ray.tracking import Tracker

logger = logging.getLogger(__name__)

HELDOUT, HUMANEVAL = "heldout", "humaneval"


def load_eval_prompts(ev: EvalConfig) -> list[dict[str, Any]]:
    """The held-out prompt rows, with every field the file has (a rule judge may read them)."""
    if not ev.prompts:
        raise PromptFileError("eval.prompts is not set: point it to a JSONL file of held-out "
                              "prompts (one {\"prompt\": ...} object per line)")
    rows, seen = [], set()
    for where, obj in read_jsonl(ev.prompts, "eval prompt file", "eval.prompts"):
        row = {**obj, "prompt": text_field(obj, ev.prompt_field, where)}
        row["prompt_id"] = str(obj.get("prompt_id", f"line{where.rsplit(':', 1)[1]}"))
        if row["prompt_id"] in seen:
            raise PromptFileError(f"{where}: duplicate prompt_id {row['prompt_id']!r}")
        seen.add(row["prompt_id"])
        rows.append(row)
    if not rows:
        raise PromptFileError(f"eval prompt file {ev.prompts} holds no prompts")
    return rows[: ev.max_prompts] if ev.max_prompts else rows


def answer_requests(prompts: list[dict[str, Any]], problems: list[dict[str, Any]],
                    ev: EvalConfig, seed: int) -> list[dict[str, Any]]:
    """Greedy requests: one per held-out prompt, one per HumanEval problem."""
    requests = []
    for row in prompts:
        requests += candidate_requests(row, HELDOUT, 1, 0.0, 1.0, ev.max_new_tokens, seed)
    for row in problems:
        requests += candidate_requests(row, HUMANEVAL, 1, 0.0, 1.0,
                                       ev.humaneval_max_new_tokens, seed)
    # Only the columns every request shares (a prompt row's own fields stay in the driver).
    keep = ("prompt_id", "prompt", "role", "sample_index", "messages", "sampling_params")
    return [{k: r[k] for k in keep} for r in requests]


def answers_dir(root: str, requests: list[dict[str, Any]]) -> RunDir:
    """Where answers to exactly these requests live: <run_dir>/eval_answers/<hash of the
    requests (messages and sampling)>/. Evaluations that differ only in their judge or
    reference (another eval.output) share them instead of generating again."""
    key = hashlib.sha256(json.dumps(requests, sort_keys=True).encode()).hexdigest()[:16]
    return RunDir(f"{root}/eval_answers/{key}")


def answer_stage(out: RunDir, checkpoint: Checkpoint, requests: list[dict[str, Any]],
                 cfg: Config, pools: KeptPools) -> list[dict[str, Any]]:
    """The checkpoint's answers ({prompt_id, role, response, response_tokens}), one pool pass
    (a stage of the answers directory `out`)."""
    import ray.data

    def produce(tmp: str) -> dict[str, Any]:
        outputs = run_engine_pool(ray.data.from_items(requests), checkpoint.path,
                                  EnginePool(cfg.engine, kept=pools), rows=len(requests))
        rows = [{"prompt_id": r["prompt_id"], "role": r["role"], "response": r["generated_text"],
                 "response_tokens": int(r["num_generated_tokens"])}
                for r in outputs.select_columns(["prompt_id", "role", "generated_text",
                                                 "num_generated_tokens"]).take_all()]
        write_rows(rows, f"{tmp}/answers.parquet")
        held = [r["response_tokens"] for r in rows if r["role"] == HELDOUT]
        return {"answers": len(rows), "mean_tokens": sum(held) / len(held) if held else None}

    stage = out.run_stage(checkpoint.name, produce, kind="eval_answers",
                          model=checkpoint.path)
    return read_rows(f"{stage.path}/answers.parquet")


def _rule_verdicts(rule: str, pattern: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ray task: the rule's verdict on each (prompt row, first, second)."""
    fn = load_rule(rule)
    out = []
    for item in items:
        text = str(fn(item["row"], item["first"], item["second"]))
        verdict = text.strip().lower() if text.strip().lower() in ("first", "second", "tie") \
            else parse_verdict(text, pattern)
        out.append({"prompt_id": item["row"]["prompt_id"], "model_first": item["model_first"],
                    "judgement": text, "verdict": verdict})
    return out


def judge_pairs(checkpoint: Checkpoint, prompts: list[dict[str, Any]], model: dict[str, str],
                reference: dict[str, str], cfg: Config, pools: KeptPools
                ) -> tuple[list[dict[str, Any]], int]:
    """Verdict rows {prompt_id, model_first, judgement, verdict} in both orders, and how many
    judge requests were too long for the judge's context (left unjudged)."""
    import ray

    judge = cfg.eval.judge
    if judge.kind == "rule":
        items = [{"row": row, "model_first": first,
                  "first": model[row["prompt_id"]] if first else reference[row["prompt_id"]],
                  "second": reference[row["prompt_id"]] if first else model[row["prompt_id"]]}
                 for row in prompts for first in (True, False)]
        task = ray.remote(num_cpus=1)(_rule_verdicts)
        return ray.get(task.remote(judge.rule, judge.verdict_pattern, items)), 0
    import ray.data

    template = load_pairwise_template(judge.prompt_template)
    requests = []
    for row in prompts:
        requests += verdict_requests(row, model[row["prompt_id"]], reference[row["prompt_id"]],
                                     template, judge.temperature, judge.max_new_tokens,
                                     cfg.generation.seed)
    engine = judge.engine or cfg.engine
    judge_model = judge.model or checkpoint.path
    too_long = 0
    if engine.kind != "http":  # an endpoint's context is its own business
        budget = ContextBudget(judge_model, judge.max_new_tokens, engine.max_model_len)
        fits = budget.fits([r["messages"] for r in requests])
        too_long = fits.count(False)
        requests = [r for r, ok in zip(requests, fits) if ok]
    if not requests:
        return [], too_long
    outputs = run_engine_pool(ray.data.from_items(requests), judge_model,
                              EnginePool(engine, kept=pools), rows=len(requests))
    verdicts = [{"prompt_id": r["prompt_id"], "model_first": bool(r["model_first"]),
                 "judgement": r["generated_text"],
                 "verdict": parse_verdict(r["generated_text"], judge.verdict_pattern)}
                for r in outputs.select_columns(["prompt_id", "model_first",
                                                 "generated_text"]).take_all()]
    return verdicts, too_long


def verdict_stage(out: RunDir, checkpoint: Checkpoint, prompts: list[dict[str, Any]],
                  answers: list[dict[str, Any]], reference_answers: list[dict[str, Any]],
                  cfg: Config, pools: KeptPools) -> dict[str, Any]:
    """The checkpoint's win rate against the reference, from verdicts in both orders."""
    def held(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {r["prompt_id"]: r for r in rows if r["role"] == HELDOUT}

    mine, ref = held(answers), held(reference_answers)
    both = [p for p in prompts if p["prompt_id"] in mine and p["prompt_id"] in ref]

    def produce(tmp: str) -> dict[str, Any]:
        verdicts, too_long = judge_pairs(
            checkpoint, both, {i: r["response"] for i, r in mine.items()},
            {i: r["response"] for i, r in ref.items()}, cfg, pools)
        write_rows(verdicts, f"{tmp}/verdicts.parquet")
        by_prompt: dict[str, dict[bool, str | None]] = {}
        for v in verdicts:
            by_prompt.setdefault(v["prompt_id"], {})[v["model_first"]] = v["verdict"]
        ids = [p["prompt_id"] for p in both]
        prefs = [prompt_preference(by_prompt.get(i, {}).get(True),
                                   by_prompt.get(i, {}).get(False)) for i in ids]
        rate = win_rate(prefs, [mine[i]["response_tokens"] for i in ids],
                        [ref[i]["response_tokens"] for i in ids])
        return {"winrate": {**rate, "judge_requests_over_context": too_long}}

    judge = cfg.eval.judge
    who = judge.rule if judge.kind == "rule" else (judge.model or "own")
    return out.run_stage(f"verdicts/{checkpoint.name}", produce, kind="eval_verdicts",
                         model=checkpoint.path, judge=who).manifest["winrate"]


def humaneval_stage(out: RunDir, checkpoint: Checkpoint, answers: list[dict[str, Any]],
                    problems: dict[str, dict[str, Any]], timeout: float) -> dict[str, Any]:
    """pass@1 of the checkpoint's greedy completions, executed in sandboxed subprocesses
    inside Ray tasks (never on the driver); a problem it did not answer (too long for the
    context) counts as failed."""
    import ray

    completions = {r["prompt_id"]: humaneval.completion_from_response(
        problems[r["prompt_id"]], r["response"]) for r in answers if r["role"] == HUMANEVAL}

    def produce(tmp: str) -> dict[str, Any]:
        ids = sorted(completions)
        chunks = [ids[i:i + 16] for i in range(0, len(ids), 16)]
        task = ray.remote(num_cpus=1)(humaneval.execute)
        done = ray.get([task.remote({i: problems[i] for i in chunk},
                                    {i: completions[i] for i in chunk}, timeout)
                        for chunk in chunks])
        results = [e for chunk in done for e in chunk]
        results += [humaneval.Execution(i, False, "too_long", "prompt exceeds the context")
                    for i in sorted(set(problems) - set(completions))]
        write_rows([vars(e) for e in results], f"{tmp}/executions.parquet")
        return {"humaneval": {"problems": len(results),
                              "pass_at_1": humaneval.pass_at_1(results),
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
    prompts, too_long = drop_overlong(load_eval_prompts(ev), reference.path, ev.max_new_tokens,
                                      context)
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
    """One checkpoint's row of the report: answers, win rate, pass@1, lm-eval metrics."""
    logger.info("eval: %s (%s)", checkpoint.name, checkpoint.path)
    is_reference = checkpoint == reference
    answers = (reference_answers if is_reference
               else answer_stage(answers_out, checkpoint, inputs.requests, cfg, pools))
    held = [a["response_tokens"] for a in answers if a["role"] == HELDOUT]
    row = {"name": checkpoint.name, "method": checkpoint.method,
           "iteration": checkpoint.iteration, "dpo_runs": checkpoint.dpo_runs,
           "path": checkpoint.path,
           "answers": {"prompts": len(held),
                       "mean_tokens": sum(held) / len(held) if held else None},
           "winrate": None if is_reference else verdict_stage(
               out, checkpoint, inputs.prompts, answers, reference_answers, cfg, pools),
           "humaneval": humaneval_stage(out, checkpoint, answers, inputs.problems,
                                        cfg.eval.humaneval_timeout) if inputs.problems else None,
           "lm_eval": None}
    if inputs.run_lm_eval:
        try:
            row["lm_eval"] = lm_eval_stage(out, checkpoint, cfg)
        except LmEvalUnavailable as err:
            inputs.notes.append(f"{checkpoint.name}: {err}")
            logger.warning(inputs.notes[-1])
    return row


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
        "HumanEval problems": len(inputs.problems),
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

