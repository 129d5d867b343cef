"""Built-in rule judges: `(prompt, response) -> float` callables for `judge.kind: rule`.

A rule judge stands in for a model judge where correctness can be checked by code (tests,
verifiable tasks). Any importable callable works: `judge.rule: my_package.rules:exact_match`.
"""

from __future__ import annotations

import re
from functools import lru_cache

from temporal_ray.miniature.tasks import RUBRIC_SCORE, grade, task_from_prompt
from temporal_ray.miniature.tiny_model import bundled_text

_WORD = re.compile(r"[a-z]+")


@lru_cache(maxsize=1)
def _vocabulary() -> frozenset[str]:
    return frozenset(_WORD.findall(" ".join(bundled_text()).lower()))


def known_words(prompt: str, response: str) -> float:
    """0-5: the share of the response's words that are real words of the bundled corpus.

    A rough fluency score for the tiny embedded model, whose random start writes mostly
    fragments: it rewards responses made of whole words, which DPO can learn to prefer.
    """
    words = _WORD.findall(response.lower())
    if not words:
        return 0.0
    vocabulary = _vocabulary()
    return 5.0 * sum(word in vocabulary for word in words) / len(words)


def answer_key_score(prompt: str, response: str) -> float:
    """0-5: the rubric score of the response's ground-truth quality on the synthetic domain
    (tasks.grade). An oracle judge: the miniature run with it shows what DPO does with pairs
    that are always right, against the self-judge's noisy ones."""
    return float(RUBRIC_SCORE[grade(task_from_prompt(prompt), response)])
