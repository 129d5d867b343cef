"""Judge outputs to scores: parse each sampled judgement, average the valid ones.

method.md: take the last `Score: k` (judge.score_pattern reads any number, so "Score: 7" is
counted as out of range, not as unparsed); drop unparseable samples and out-of-range values;
a candidate with no valid sample gets no score (None). Every drop is counted by reason so that
a run where judgements fail to parse says so. Pure.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

# Why a single judgement yielded no score.
NO_SCORE = "no_score"
OUT_OF_RANGE = "out_of_range"


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
