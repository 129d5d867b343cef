"""The verdict stage of `temporal-ray eval`: one checkpoint's held-out answers against the
reference's, judged in both orders (pairwise.py; or a rule), turned into win rates
(winrate.py) with bootstrap intervals (intervals.py).

In:  the prompt rows, and each side's held-out answer rows {prompt_id, response,
     response_tokens} by prompt_id.
Out: verdicts/<checkpoint>/verdicts.parquet ({prompt_id, model_first, judgement, verdict})
     and the manifest's `winrate`. It does not know how the answers were made.
"""

from __future__ import annotations

from typing import Any

from temporal_ray.config import Config
from temporal_ray.engines.kept_pool import KeptPools
from temporal_ray.engines.pool import EnginePool, run_engine_pool
from temporal_ray.engines.preflight import ContextBudget
from temporal_ray.evaluate.checkpoints import Checkpoint
from temporal_ray.evaluate.intervals import win_rate_intervals
from temporal_ray.evaluate.pairwise import load_pairwise_template, verdict_requests
from temporal_ray.evaluate.winrate import parse_verdict, prompt_preference, win_rate
from temporal_ray.stages.judge import load_rule
from temporal_ray.storage.files import write_rows
from temporal_ray.storage.run_dir import RunDir


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
                  mine: dict[str, dict[str, Any]], ref: dict[str, dict[str, Any]],
                  cfg: Config, pools: KeptPools) -> dict[str, Any]:
    """The checkpoint's win rate against the reference, from verdicts in both orders, with
    bootstrap intervals (`mine`, `ref`: each side's held-out answer rows by prompt_id)."""
    both = [p for p in prompts if p["prompt_id"] in mine and p["prompt_id"] in ref]

    def produce(tmp: str) -> dict[str, Any]:
        verdicts, too_long = judge_pairs(
            checkpoint, both, {i: r["response"] for i, r in mine.items()},
            {i: r["response"] for i, r in ref.items()}, cfg, pools)
        write_rows(verdicts, f"{tmp}/verdicts.parquet")
        return {"winrate": {**rates(verdicts, [p["prompt_id"] for p in both], mine, ref),
                            "judge_requests_over_context": too_long}}

    judge = cfg.eval.judge
    who = judge.rule if judge.kind == "rule" else (judge.model or "own")
    return out.run_stage(f"verdicts/{checkpoint.name}", produce, kind="eval_verdicts",
                         model=checkpoint.path, judge=who).manifest["winrate"]


def rates(verdicts: list[dict[str, Any]], ids: list[str], mine: dict[str, dict[str, Any]],
          ref: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """winrate.win_rate of the prompts `ids`, and each rate's 95% interval under `<rate>_ci`
    (intervals.py: the prompts with a preference, resampled with their length differences)."""
    by_prompt: dict[str, dict[bool, str | None]] = {}
    for v in verdicts:
        by_prompt.setdefault(v["prompt_id"], {})[v["model_first"]] = v["verdict"]
    prefs = [prompt_preference(by_prompt.get(i, {}).get(True),
                               by_prompt.get(i, {}).get(False)) for i in ids]
    lengths = [mine[i]["response_tokens"] for i in ids], [ref[i]["response_tokens"] for i in ids]
    rate = win_rate(prefs, *lengths)
    kept = [k for k, p in enumerate(prefs) if p is not None]
    bounds = win_rate_intervals([prefs[k] for k in kept],
                                [lengths[0][k] - lengths[1][k] for k in kept])
    return {**rate, **{f"{name}_ci": bound for name, bound in bounds.items()}}
