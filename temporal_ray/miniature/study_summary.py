"""The study's numbers: every measurement of the miniature's report, as a mean over seeds with a
95% bootstrap interval, and the paper's three claims put to the intervals.

In:  one results.json dict per seed (recipe.py), seeds in order: `checkpoints` (answers and
     judge per M_k), `iterations` (collapse measurements), optionally `compute` (per method,
     token counts: whichever numeric keys are there are averaged).
Out: a JSON-ready dict: per checkpoint and per iteration the intervals of each `Metric`, the
     paired comparison of the methods' final checkpoints, the last-minus-first change of gap and
     cosine per method, the claims with a verdict each, and compute per method.
A verdict is "reproduced" only when the interval lies wholly on the claimed side of 0, "not
reproduced" when it lies wholly on the other side, and "inconclusive" otherwise.
Pure: no Ray, nothing read or written here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from temporal_ray.analysis.bootstrap import Interval, bootstrap_mean, paired_difference

SR, TEMPORAL = "self_rewarding", "temporal"
Results = dict[str, Any]


@dataclass(frozen=True)
class Metric:
    """One measured quantity of a checkpoint or iteration row."""

    key: str
    label: str
    read: Callable[[dict[str, Any]], float | None]
    digits: str = ".4f"
    """How the study's tables print it (a count needs no four decimals)."""

    def value(self, row: dict[str, Any] | None) -> float | None:
        if row is None:
            return None
        try:
            return self.read(row)
        except (KeyError, TypeError):  # a results.json from before a measurement existed
            return None


CHECKPOINT_METRICS = [
    Metric("accuracy", "held-out accuracy", lambda r: r["answers"]["accuracy"]),
    Metric("judge_agreement", "judge agreement", lambda r: r["judge"]["agreement"]),
    Metric("judge_single_agreement", "single judgements agreeing",
           lambda r: r["judge"]["single_agreement"]),
    Metric("judge_spearman", "judge Spearman", lambda r: r["judge"]["spearman"]),
    Metric("judge_auc", "judge correct-vs-wrong AUC",
           lambda r: r["judge"]["correct_vs_wrong_auc"]),
]
ITERATION_METRICS = [
    Metric("pairs", "DPO pairs kept", lambda r: r["count"], ".1f"),
    Metric("gap", "chosen - rejected score gap", lambda r: r["mean_gap"]),
    Metric("cosine", "chosen-rejected feature cosine", lambda r: r["cosine"]),
    Metric("dpo_reward_margin", "DPO reward margin", lambda r: r["dpo_reward_margin"]),
    Metric("dpo_grad_norm", "DPO grad norm", lambda r: r["dpo_mean_grad_norm"]),
]
METRICS = {m.key: m for m in CHECKPOINT_METRICS + ITERATION_METRICS}


def checkpoint_key(row: dict[str, Any]) -> tuple[str, int]:
    """M0 is one model whichever method's row it sits in."""
    return ("m0", 0) if row["index"] == 0 else (row["method"], row["index"])


def _rows_by_key(results: list[Results], kind: str,
                 key: Callable[[dict[str, Any]], tuple[str, int]]) -> dict[tuple, list]:
    """Each key (in first-seen order) with its row per seed (None where a seed lacks it)."""
    table: dict[tuple, list] = {}
    for s, seed_results in enumerate(results):
        for row in seed_results.get(kind, []):
            table.setdefault(key(row), [None] * len(results))
            if table[key(row)][s] is None:
                table[key(row)][s] = row
    return table


def _intervals(rows: list[dict[str, Any] | None], metrics: list[Metric]) -> dict[str, Any]:
    return {m.key: bootstrap_mean([m.value(r) for r in rows]).to_dict() for m in metrics}


def summarise_checkpoints(results: list[Results]) -> list[dict[str, Any]]:
    out = []
    for (method, index), rows in _rows_by_key(results, "checkpoints", checkpoint_key).items():
        first = next(r for r in rows if r is not None)
        out.append({"method": method, "index": index, "compute": first["compute"],
                    "seeds": sum(r is not None for r in rows),
                    "metrics": _intervals(rows, CHECKPOINT_METRICS)})
    return out


def summarise_iterations(results: list[Results]) -> list[dict[str, Any]]:
    table = _rows_by_key(results, "iterations", lambda r: (r["method"], r["iteration"]))
    return [{"method": method, "iteration": i, "seeds": sum(r is not None for r in rows),
             "metrics": _intervals(rows, ITERATION_METRICS)}
            for (method, i), rows in table.items()]


def _final(seed_results: Results, method: str) -> dict[str, Any] | None:
    rows = [r for r in seed_results.get("checkpoints", []) if r["method"] == method]
    return max(rows, key=lambda r: r["index"]) if rows else None


def compare_finals(results: list[Results]) -> dict[str, Any]:
    """Temporal's final checkpoint minus Self-Rewarding's, paired by seed."""
    temporal = [_final(r, TEMPORAL) for r in results]
    sr = [_final(r, SR) for r in results]
    known = [(t, s) for t, s in zip(temporal, sr) if t is not None and s is not None]
    compute = {"temporal": known[0][0]["compute"], "self_rewarding": known[0][1]["compute"],
               "temporal_index": known[0][0]["index"],
               "self_rewarding_index": known[0][1]["index"]} if known else {}
    return {**compute, "metrics": {
        m.key: paired_difference([m.value(t) for t in temporal],
                                 [m.value(s) for s in sr]).to_dict()
        for m in CHECKPOINT_METRICS}}


def _iteration_values(seed_results: Results, method: str, metric: Metric,
                      pick: Callable[[list], dict]) -> float | None:
    rows = sorted((r for r in seed_results.get("iterations", []) if r["method"] == method),
                  key=lambda r: r["iteration"])
    return metric.value(pick(rows)) if len(rows) > 1 else None


def change(results: list[Results], method: str, metric: Metric) -> Interval:
    """Last iteration minus first, per seed (undefined with a single iteration)."""
    return paired_difference(
        [_iteration_values(r, method, metric, lambda rows: rows[-1]) for r in results],
        [_iteration_values(r, method, metric, lambda rows: rows[0]) for r in results])


def _relative_gap(seed_results: Results, method: str) -> float | None:
    """The gap's last iteration over its first: how much of it survives."""
    last = _iteration_values(seed_results, method, METRICS["gap"], lambda rows: rows[-1])
    first = _iteration_values(seed_results, method, METRICS["gap"], lambda rows: rows[0])
    return None if last is None or not first else last / first


def verdict(intervals: list[tuple[Interval, int]]) -> str:
    """Every (interval, claimed sign) on its claimed side: reproduced; any on the other side:
    not reproduced; otherwise inconclusive."""
    if all(i.excludes_zero(sign) for i, sign in intervals):
        return "reproduced"
    if any(i.excludes_zero(-sign) for i, sign in intervals):
        return "not reproduced"
    return "inconclusive"


def claims(results: list[Results]) -> list[dict[str, Any]]:
    """The paper's claims (a), (b) and (c), each with the intervals it rests on."""
    sr_gap, sr_cos = change(results, SR, METRICS["gap"]), change(results, SR, METRICS["cosine"])
    survival = paired_difference([_relative_gap(r, TEMPORAL) for r in results],
                                 [_relative_gap(r, SR) for r in results])
    final_acc = Interval(**compare_finals(results)["metrics"]["accuracy"])
    rows = [
        ("a", "Under Self-Rewarding the chosen-rejected gap shrinks and the feature cosine rises",
         [("Self-Rewarding gap, last - first iteration", sr_gap, -1),
          ("Self-Rewarding cosine, last - first iteration", sr_cos, +1)]),
        ("b", "Under Temporal the gap holds: more of it survives than under Self-Rewarding",
         [("gap last/first, Temporal - Self-Rewarding", survival, +1)]),
        ("c", "At equal compute Temporal ends with higher held-out accuracy",
         [("final held-out accuracy, Temporal - Self-Rewarding", final_acc, +1)]),
    ]
    return [{"claim": name, "statement": statement,
             "evidence": [{"label": label, "direction": sign, **interval.to_dict()}
                          for label, interval, sign in evidence],
             "verdict": verdict([(interval, sign) for _, interval, sign in evidence])}
            for name, statement, evidence in rows]


def compute_means(results: list[Results]) -> dict[str, dict[str, Any]]:
    """Per method, the mean over seeds of every numeric key of results["compute"], if any."""
    per_method: dict[str, dict[str, list[float]]] = {}
    for seed_results in results:
        for method, counts in (seed_results.get("compute") or {}).items():
            for key, value in (counts or {}).items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    per_method.setdefault(method, {}).setdefault(key, []).append(value)
    return {method: {key: bootstrap_mean(values).to_dict() for key, values in keys.items()}
            for method, keys in per_method.items()}


def form_only(results: list[Results]) -> dict[str, Any]:
    """The form-only baseline judge's measures (ground_truth.form_only_judge) over seeds: each
    seed's data are its own, so the baseline varies too."""
    keys = ("agreement", "spearman", "correct_vs_wrong_auc")
    rows = [r.get("form_only_judge") or {} for r in results]
    return {key: bootstrap_mean([row.get(key) for row in rows]).to_dict() for key in keys}


def summarise(results: list[Results], seeds: list[int]) -> dict[str, Any]:
    """Everything study.json holds, from the per-seed results in the order of `seeds`."""
    if len(results) != len(seeds) or not results:
        raise ValueError(f"one results dict per seed: {len(results)} for seeds {seeds}")
    changes = {method: {m.key: change(results, method, m).to_dict()
                        for m in (METRICS["gap"], METRICS["cosine"])}
               for method in (SR, TEMPORAL)}
    return {
        "seeds": seeds,
        "settings": results[0].get("settings", {}),
        "form_only_judge": form_only(results),
        "checkpoints": summarise_checkpoints(results),
        "iterations": summarise_iterations(results),
        "comparison": compare_finals(results),
        "changes": changes,
        "claims": claims(results),
        "compute": compute_means(results),
    }
