"""Judge outputs to scores: parse each sampled judgement, average the valid ones.

method.md: take the last `Score: k` (judge.score_pattern reads any number, so "Score: 7" is
counted as out of range, not as unparsed); drop unparseable samples and out-of-range values;
a candidate with no valid sample gets no score (None). Every drop is counted by reason so that
a run where judgements fail to parse says so. Pure.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Any

# Why a single judgement yielded no score.
NO_SCORE = "no_score"
OUT_OF_RANGE = "out_of_range"
# Why a candidate got no judgement, or a shortened one (judge.overlong).
OVER_CONTEXT = "over_context"
JUDGE_TRUNCATED = "judge_truncated"


@dataclass(frozen=True)
class Judgement:
    score: float | None
    problem: str | None = None


def parse_judgement(text: str, pattern: str, low: float = 0.0, high: float = 5.0) -> Judgement:
    """The score of one judgement text: the last match of `pattern` (its first group)."""
    matches = list(re.finditer(pattern, text))
    if not matches:
        return Judgement(None, NO_SCORE)
    try:
        value = float(matches[-1].group(1))
    except (IndexError, ValueError):
        return Judgement(None, NO_SCORE)
    if not low <= value <= high:
        return Judgement(None, OUT_OF_RANGE)
    return Judgement(value)


def average_score(judgements: list[Judgement]) -> float | None:
    """Mean of the valid scores, or None when no judgement gave one."""
    valid = [j.score for j in judgements if j.score is not None]
    return sum(valid) / len(valid) if valid else None


def count_problems(judgements: list[Judgement]) -> Counter:
    return Counter(j.problem for j in judgements if j.problem is not None)


def judge_counts(rows: list[dict[str, Any]], pattern: str, low: float,
                 high: float) -> dict[str, Any]:
    """Per role: candidates, how many got a score, and why judgements failed."""
    by_role: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = by_role.setdefault(row["role"], {"candidates": 0, "scored": 0, "scores": [],
                                                 NO_SCORE: 0, OUT_OF_RANGE: 0,
                                                 OVER_CONTEXT: 0, JUDGE_TRUNCATED: 0})
        entry["candidates"] += 1
        entry[OVER_CONTEXT] += bool(row.get(OVER_CONTEXT))
        entry[JUDGE_TRUNCATED] += bool(row.get(JUDGE_TRUNCATED))
        if row["score"] is not None:
            entry["scored"] += 1
            entry["scores"].append(row["score"])
        problems = count_problems(
            [parse_judgement(text, pattern, low, high) for text in row["judgements"] or []])
        for problem, count in problems.items():
            entry[problem] += count
    for entry in by_role.values():
        entry["mean_score"] = _mean(entry.pop("scores"))
    return {"rows": len(rows), "roles": by_role}


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")
