"""Stage: judge candidates. Candidate rows + a judge -> the same rows with a score.

In:  Parquet candidate rows (stages/generate.py), from one or more roles.
Out: the candidate rows plus score (float, or null when no judgement was valid),
     judgements (the raw judge texts, J per candidate), judge_scores (each parsed score or
     null), valid_judgements, over_context (the judge prompt did not fit the judge's
     context with judge.max_new_tokens to spare, so it was not sent: no score, counted) and
     judge_truncated (judge.overlong=truncate: the judge saw the response cut to fit).
Two judges fill the same columns:
- `llm`: the judge model answers the rubric prompt J times per candidate (J requests with
  their own seeds, through the same engine pool as generation); scores are parsed and averaged.
- `rule`: a Python callable `module:function(prompt, response) -> float`, run as plain
  Ray tasks (a rule needs no model, so no actor pool).
It returns its counts per role for the manifest, and the tokens the judge read and wrote as
its engine counted them (judge_prompt_tokens, judge_generated_tokens; none for a rule). The
stage knows nothing of pairs or methods.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pandas as pd

from temporal_ray.config import JudgeConfig
from temporal_ray.core.judging import (
    JUDGE_TRUNCATED,
    OVER_CONTEXT,
    average_score,
    judge_counts,
    parse_judgement,
)
from temporal_ray.core.requests import derive_seed, sampling_params
from temporal_ray.core.rows import CANDIDATE_COLUMNS, CANDIDATE_KEY
from temporal_ray.core.rubric import judge_messages, load_template
from temporal_ray.engines.pool import EnginePool, run_models_pool
from temporal_ray.storage.files import count_rows, read_dataset, read_rows, write_rows
from temporal_ray.terminal import Progress


def load_rule(spec: str) -> Callable[[str, str], float]:
    """Import `module:function`, with an error that says what is wrong."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"judge.rule {spec!r} must look like 'package.module:function'")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"judge.rule {spec!r} cannot be imported: {err}") from err
    if not callable(fn):
        raise ValueError(f"judge.rule {spec!r} is not callable")
    return fn


def score_with_rule(batch: pd.DataFrame, rule: str) -> pd.DataFrame:
    """map_batches function: scores each candidate of a batch with a rule callable."""
    fn = load_rule(rule)
    out = batch.copy()
    scores = [float(fn(p, r)) for p, r in zip(batch["prompt"], batch["response"])]
    out["score"] = scores
    out["judgements"] = [[] for _ in scores]
    out["judge_scores"] = [[s] for s in scores]
    out["valid_judgements"] = 1
    return out


def judge_requests(candidate: dict[str, Any], template: str, samples: int, temperature: float,
                   top_p: float, max_tokens: int, seed: int) -> list[dict[str, Any]]:
    """J judge requests for one candidate."""
    messages = judge_messages(template, candidate["prompt"], candidate["response"])
    return [
        {**candidate, "judge_index": index, "messages": messages, JUDGE_TRUNCATED: False,
         "sampling_params": sampling_params(
             temperature, top_p, max_tokens,
             derive_seed(seed, "judge", candidate["role"], candidate["prompt_id"],
                         candidate["sample_index"], index))}
        for index in range(samples)
    ]


def aggregate_judgements(outputs: pd.DataFrame, pattern: str, low: float,
                         high: float) -> list[dict[str, Any]]:
    """Engine output rows (J per candidate, in any order) -> one scored row per candidate,
    ordered by CANDIDATE_KEY; a candidate's judgements stay in judge_index order."""
    if outputs.empty:  # nothing judged (every request over the judge's context)
        return []
    outputs = outputs.sort_values([*CANDIDATE_KEY, "judge_index"], kind="stable")
    scored = []
    for _, group in outputs.groupby(CANDIDATE_KEY, sort=False):
        texts = list(group["generated_text"])
        parsed = [parse_judgement(text, pattern, low, high) for text in texts]
        first = group.iloc[0]
        # Only the candidate's own columns: engines may add columns of their own. Python
        # values, not numpy scalars, so Arrow infers the column types when rows are written.
        row = {col: _plain(first[col]) for col in CANDIDATE_COLUMNS}
        row.update(score=average_score(parsed), judgements=texts,
                   judge_scores=[j.score for j in parsed],
                   valid_judgements=sum(j.score is not None for j in parsed))
        if JUDGE_TRUNCATED in group:
            row[JUDGE_TRUNCATED] = bool(group[JUDGE_TRUNCATED].any())
        scored.append(row)
    return scored


def fit_judge_context(batch: pd.DataFrame, model_path: str, max_new_tokens: int,
                      max_model_len: int | None, template: str,
                      truncate: bool) -> pd.DataFrame:
    """map_batches function: only the requests whose prompt fits the judge's context (a
    prompt that does not would fail a vLLM engine's whole batch); with `truncate`, a request
    that does not fit shows the judge its response cut to fit instead (flagged)."""
    from temporal_ray.engines.preflight import ContextBudget

    budget = ContextBudget(model_path, max_new_tokens, max_model_len)
    chats = [[{"role": m["role"], "content": m["content"]} for m in messages]
             for messages in batch["messages"]]
    fits = budget.fits(chats)
    batch = batch.copy()
    if truncate and not all(fits):
        messages, truncated = list(batch["messages"]), list(batch[JUDGE_TRUNCATED])
        for i, (prompt, response) in enumerate(zip(batch["prompt"], batch["response"])):
            if fits[i]:
                continue
            cut = budget.shorten(response, lambda r, p=prompt: judge_messages(template, p, r))
            if cut is not None:
                messages[i], truncated[i], fits[i] = judge_messages(template, prompt, cut), \
                    True, True
        batch["messages"], batch[JUDGE_TRUNCATED] = messages, truncated
    return batch[fits]


def unjudged_rows(candidates: list[dict[str, Any]], judged: list[dict[str, Any]]
                  ) -> list[dict[str, Any]]:
    """Rows for the candidates that got no judge output at all (their prompt was over the
    judge's context): no score, flagged, so that they are counted instead of lost."""
    seen = {tuple(r[k] for k in CANDIDATE_KEY) for r in judged}
    return [{**{col: c[col] for col in CANDIDATE_COLUMNS}, "score": None, "judgements": [],
             "judge_scores": [], "valid_judgements": 0, JUDGE_TRUNCATED: False,
             OVER_CONTEXT: True}
            for c in candidates if tuple(c[k] for k in CANDIDATE_KEY) not in seen]


def judge_candidates(candidate_paths: list[str], judge_model: str, judge: JudgeConfig,
                     pool: EnginePool, seed: int, out_dir: str) -> dict[str, Any]:
    """Score the candidates at `candidate_paths` into `out_dir`; returns the stage's counts
    per role (`judge_counts`: candidates, scored, and why judgements failed). With
    `pool.lora_rank`, `judge_model` may be a LoRA checkpoint whose base and adapter one pool
    serves (lora.base 'initial'), like the generation pools."""
    tokens = {"judge_prompt_tokens": 0, "judge_generated_tokens": 0}  # a rule reads none
    if judge.kind == "rule":
        # A rule is cheap and stateless: plain Ray tasks, no actor pool to start.
        read_dataset(candidate_paths).map_batches(
            score_with_rule, fn_kwargs={"rule": judge.rule}, batch_format="pandas"
        ).write_parquet(out_dir)
    else:
        rows, tokens = judge_with_model(candidate_paths, judge_model, judge, pool, seed)
        write_rows(rows, f"{out_dir}/scores.parquet")
    return {**judge_counts(read_rows(out_dir), judge.score_pattern, judge.min_score,
                           judge.max_score), **tokens}


def judge_with_model(candidate_paths: list[str], judge_model: str, judge: JudgeConfig,
                     pool: EnginePool, seed: int
                     ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The scored rows of an `llm` judge: J requests per candidate through the pool; and
    the judge's compute in tokens as the engine counted them (`engine_tokens`)."""
    candidates = read_dataset(candidate_paths)
    template = load_template(judge.prompt_template)
    requests = candidates.flat_map(judge_requests, fn_kwargs={
        "template": template, "samples": judge.samples,
        "temperature": judge.temperature, "top_p": judge.top_p,
        "max_tokens": judge.max_new_tokens, "seed": seed})
    engine = pool.engine
    if engine.kind == "http":  # an endpoint serves what it serves, context and all
        pool = replace(pool, lora_rank=None)
    else:
        requests = requests.map_batches(fit_judge_context, batch_format="pandas", fn_kwargs={
            "model_path": judge_model, "max_new_tokens": judge.max_new_tokens,
            "max_model_len": engine.max_model_len, "template": template,
            "truncate": judge.overlong == "truncate"})
    rows = count_rows(candidate_paths) * judge.samples
    with Progress("judging", rows, "judgements") as bar:
        outputs = run_models_pool(requests, {"judge": judge_model}, None, pool, rows,
                                  on_rows=bar.update)
    # A candidate's J judgements come back from different actors: gather them in the driver.
    # The rows are small (thousands to a few hundred thousand), and a Ray Data groupby
    # shuffle costs more than the judging itself at that size.
    columns = [*CANDIDATE_COLUMNS, "judge_index", "generated_text", JUDGE_TRUNCATED,
               "num_input_tokens", "num_generated_tokens"]
    judged = outputs.select_columns(columns).to_pandas()
    rows = aggregate_judgements(judged, judge.score_pattern, judge.min_score, judge.max_score)
    for row in rows:
        row[OVER_CONTEXT] = False
    return (rows + unjudged_rows(candidates.select_columns(CANDIDATE_COLUMNS).take_all(), rows),
            engine_tokens(judged))


def engine_tokens(outputs: pd.DataFrame) -> dict[str, int]:
    """A judge's tokens from its engine's own counts: judge_prompt_tokens, the prompt tokens
    of every judgement sent (the rubric counts once per judgement, though vLLM's prefix cache
    may prefill it once), and judge_generated_tokens, the tokens it sampled. A request over
    the judge's context was never sent and counts nothing."""
    if outputs.empty:
        return {"judge_prompt_tokens": 0, "judge_generated_tokens": 0}
    return {"judge_prompt_tokens": int(outputs["num_input_tokens"].sum()),
            "judge_generated_tokens": int(outputs["num_generated_tokens"].sum())}


def _plain(value: Any) -> Any:
    """A numpy scalar from pandas as a Python value."""
    return value.item() if hasattr(value, "item") else value
