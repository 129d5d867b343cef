"""Ground truth for the checkpoints of a run on the synthetic domain (tasks.py).

Two checks per checkpoint, in one pass of the checkpoint's engine pool (the same Ray Data pool,
request rows and judge parsing as training) and stored as one resumable stage:
- answers: a greedy answer to each held-out task, graded exactly by `toytask.grade` ->
  accuracy, per family, and the mix of qualities;
- judge check: the checkpoint judges held-out answers of known quality with the run's judge
  prompt and sampling -> `metrics.judge_agreement` of the averaged scores with the rubric's,
  the same share over single judgements (`single_agreement`), and the
  correct-vs-wrong AUC: among on-topic answers, the chance that a correct one scores above a
  wrong one. Agreement alone can mislead: a judge that reads only the form (off topic, bare or
  wordy) agrees on 3 of 4 balanced answers without checking any (`form_only_judge`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from temporal_ray.analysis.metrics import judge_agreement, ranking_auc
from temporal_ray.core.judging import JUDGE_TRUNCATED, judge_counts
from temporal_ray.core.requests import candidate_requests
from temporal_ray.core.rows import CANDIDATE_COLUMNS
from temporal_ray.core.rubric import load_template
from temporal_ray.engines.kept_pool import KeptPools
from temporal_ray.engines.pool import EnginePool, run_engine_pool
from temporal_ray.miniature.config import MiniatureRunConfig
from temporal_ray.miniature.tasks import RUBRIC_SCORE, Quality, Task, form_only_score, grade
from temporal_ray.stages.judge import aggregate_judgements, judge_requests
from temporal_ray.storage.files import write_rows
from temporal_ray.storage.run_dir import RunDir

HELDOUT_ROLE = "heldout"
CHECK_ROLE = "check"


def answer_summary(answers: list[dict[str, Any]], tasks: dict[str, Task]) -> dict[str, Any]:
    """Accuracy (correct = clean or verbose) overall and per family, the quality mix and the
    mean answer length, of answer rows {prompt_id, response, response_tokens}."""
    graded = [(tasks[a["prompt_id"]], grade(tasks[a["prompt_id"]], a["response"]))
              for a in answers]
    families: dict[str, list[bool]] = {}
    for task, quality in graded:
        families.setdefault(task.family, []).append(quality >= Quality.CORRECT_VERBOSE)
    return {
        "answers": len(answers),
        "accuracy": sum(q >= Quality.CORRECT_VERBOSE for _, q in graded) / len(graded),
        "clean_accuracy": sum(q == Quality.CORRECT_CLEAN for _, q in graded) / len(graded),
        "accuracy_by_family": {f: sum(v) / len(v) for f, v in sorted(families.items())},
        "qualities": dict(Counter(q.name.lower() for _, q in graded)),
        "mean_answer_tokens": sum(a["response_tokens"] for a in answers) / len(answers),
    }


def judge_measures(judge_scores: list[float | None], true_scores: list[int]) -> dict[str, Any]:
    """`judge_agreement`, plus `correct_vs_wrong_auc` over the parsed on-topic answers (correct
    clean or verbose against wrong): 0.5 means the judge does not check correctness."""
    correct = {RUBRIC_SCORE[Quality.CORRECT_CLEAN], RUBRIC_SCORE[Quality.CORRECT_VERBOSE]}
    pairs = [(j, t) for j, t in zip(judge_scores, true_scores) if j is not None]
    return {**judge_agreement(judge_scores, true_scores),
            "correct_vs_wrong_auc": ranking_auc(
                [j for j, t in pairs if t in correct],
                [j for j, t in pairs if t == RUBRIC_SCORE[Quality.WRONG_ON_TOPIC]])}


def single_judgement_agreement(judged: list[dict[str, Any]], truth: dict[str, int],
                               samples: int) -> float | None:
    """The share of single judgements (each of a candidate's J `samples`; an unparsed one is a
    miss) that give the rubric's score. The averaged score (`agreement`) misses wherever the J
    samples split: a 5 and a 2 average to 3.5, no rubric score at all."""
    hits = sum(abs(s - truth[row["prompt_id"]]) <= 0.5
               for row in judged for s in row["judge_scores"] if s is not None)
    return hits / (len(judged) * samples) if judged else None


def form_only_judge(check: list[dict[str, Any]], tasks: dict[str, Task]) -> dict[str, Any]:
    """`judge_measures` of the form-only baseline (tasks.form_only_score) on the check rows;
    `tasks` maps a task's prompt text to its Task (tasks.answer_key)."""
    return judge_measures([form_only_score(tasks[r["prompt"]], r["response"]) for r in check],
                          [r["true_score"] for r in check])


def checkpoint_requests(heldout: list[dict[str, Any]], check: list[dict[str, Any]],
                        cfg: MiniatureRunConfig) -> list[dict[str, Any]]:
    """Both checks' engine requests, one column set: a greedy answer per held-out task, and
    J judge requests (the run's judge prompt and sampling) per known-quality candidate."""
    judge = cfg.judge
    template = load_template(judge.prompt_template)
    requests = []
    for task in heldout:
        requests += candidate_requests(task, HELDOUT_ROLE, samples=1, temperature=0.0,
                                       top_p=1.0, max_tokens=cfg.miniature.answer_tokens,
                                       seed=cfg.generation.seed)
    for row in check:
        candidate = {"prompt_id": row["prompt_id"], "prompt": row["prompt"], "system": "",
                     "role": CHECK_ROLE, "sample_index": 0, "response": row["response"],
                     "prompt_tokens": 0, "response_tokens": 0}
        requests += judge_requests(candidate, template, judge.samples, judge.temperature,
                                   judge.top_p, judge.max_new_tokens, cfg.generation.seed)
    blank = {"response": "", "prompt_tokens": 0, "response_tokens": 0, "judge_index": 0,
             JUDGE_TRUNCATED: False}
    return [{**blank, **request} for request in requests]


def check_checkpoint(run: RunDir, stage: str, model: str, heldout: list[dict[str, Any]],
                     check: list[dict[str, Any]], cfg: MiniatureRunConfig,
                     pools: KeptPools) -> dict[str, Any]:
    """Both ground-truth checks of `model` in one pass of its engine pool (a stage of `run`):
    {"answers": answer_summary(...), "judge": judge_agreement(...) + parse failures}."""
    import ray.data

    judge = cfg.judge

    def produce(tmp: str) -> dict[str, Any]:
        requests = checkpoint_requests(heldout, check, cfg)
        outputs = run_engine_pool(ray.data.from_items(requests), model,
                                  EnginePool(cfg.engine, kept=pools),
                                  rows=len(requests)).select_columns(
            [*CANDIDATE_COLUMNS, "judge_index", "generated_text", "num_generated_tokens"]
        ).to_pandas()
        answers = outputs[outputs["role"] == HELDOUT_ROLE]
        answer_rows = [{"prompt_id": r.prompt_id, "response": r.generated_text,
                        "response_tokens": int(r.num_generated_tokens)}
                       for r in answers.itertuples()]
        judged = aggregate_judgements(outputs[outputs["role"] == CHECK_ROLE],
                                      judge.score_pattern, judge.min_score, judge.max_score)
        write_rows(answer_rows, f"{tmp}/answers.parquet")
        write_rows(judged, f"{tmp}/judgements.parquet")
        tasks = {r["prompt_id"]: Task(r["family"], r["prompt"], r["answer"]) for r in heldout}
        truth = {r["prompt_id"]: r["true_score"] for r in check}
        scores = {r["prompt_id"]: r["score"] for r in judged}
        ids = sorted(truth)
        failures = judge_counts(judged, judge.score_pattern, judge.min_score,
                                judge.max_score)["roles"][CHECK_ROLE]
        return {"answers": answer_summary(answer_rows, tasks),
                "judge": {**judge_measures([scores.get(i) for i in ids], [truth[i] for i in ids]),
                          "single_agreement": single_judgement_agreement(
                              judged, truth, judge.samples),
                          "no_score": failures["no_score"],
                          "out_of_range": failures["out_of_range"]}}

    return run.run_stage(stage, produce, kind="ground_truth", model=model).manifest
