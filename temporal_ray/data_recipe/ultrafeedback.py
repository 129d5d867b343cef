"""UltraFeedback (openbmb/UltraFeedback) rows -> instructions with scored completions.

In:  (where, row) for each row as published: source, instruction, models, and completions, a
     list of {model, principle, custom_system_prompt, response, annotations, fine-grained_score,
     overall_score, critique}. `annotations` holds GPT-4's four aspects, each with a "Rating"
     ("1".."5" as a string, or "N/A") and a "Rationale"; truthfulness and helpfulness also have
     a "Rationale For Rating".
Out: `Item`s: the instruction and its completions, each with
     - `rating`: the mean of its valid aspect ratings (1..5), or the row's fine-grained_score
       where no rating is valid;
     - `score`: the rating on the judge rubric's 0..5 scale (`rubric_score`);
     - `justification`: GPT-4's rationales cut to the rubric's 100 words (the critique, which
       speaks to the author, only where there are none).
Pure: rows in, items out; completions that cannot be scored are counted, not raised.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from temporal_ray.data_recipe import fields
from temporal_ray.data_recipe.errors import DataRecipeError

ASPECTS = ("instruction_following", "honesty", "truthfulness", "helpfulness")
# The rationales in the order a judge's justification reads best: does it follow the
# instruction, is it helpful, is it true, is it honest.
RATIONALES = (("instruction_following", "Rationale"), ("helpfulness", "Rationale For Rating"),
              ("truthfulness", "Rationale For Rating"), ("honesty", "Rationale"))
JUSTIFICATION_WORDS = 100


@dataclass(frozen=True)
class Completion:
    response: str
    rating: float
    score: int
    justification: str


@dataclass(frozen=True)
class Item:
    where: str
    source: str
    instruction: str
    completions: tuple[Completion, ...]


def _aspect(annotations: dict[str, Any], name: str) -> dict[str, Any]:
    value = annotations.get(name)
    if isinstance(value, list):  # the annotation scripts' intermediate form: one per shuffle
        value = value[0] if value else None
    return value if isinstance(value, dict) else {}


def _rating(value: Any) -> int | None:
    """A GPT-4 rating 1..5 ("4" or 4), or None for "N/A", null or anything else."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 1 <= value <= 5:
        return int(value)
    return None


def _fine_grained(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 1 <= value <= 5:
        return float(value)
    return None


def rubric_score(mean_rating: float, instruction_following: int | None) -> int:
    """GPT-4's ratings on the rubric's additive 0..5 scale.

    An instruction-following rating of 1 is UltraFeedback's "Irrelevant": the rubric's first
    point (a relevant response) is not earned, so 0. Otherwise the mean of the valid aspect
    ratings (1..5) rounded half up."""
    if instruction_following == 1:
        return 0
    return min(5, max(1, math.floor(mean_rating + 0.5)))


def cut_words(text: str, limit: int = JUSTIFICATION_WORDS) -> str:
    """At most `limit` words: whole sentences while they fit, else the first `limit` words."""
    sentences = re.split(r"(?<=[.!?])\s+", " ".join(text.split()))
    kept: list[str] = []
    words = 0
    for sentence in sentences:
        count = len(sentence.split())
        if words + count > limit:
            break
        kept.append(sentence)
        words += count
    if kept:
        return " ".join(kept)
    return " ".join(text.split()[:limit]) + " ..."


def justification(annotations: dict[str, Any], critique: str | None) -> str:
    parts: list[str] = []
    for aspect, key in RATIONALES:
        value = _aspect(annotations, aspect).get(key)
        if isinstance(value, str) and value.strip() and value.strip() not in parts:
            parts.append(value.strip())
    if not parts and critique and critique.strip():
        parts = [critique.strip()]
    return cut_words(" ".join(parts)) if parts else ""


def _completion(raw: Any, where: str, dropped: Counter[str]) -> Completion | None:
    if not isinstance(raw, dict):
        raise DataRecipeError(f"{where}: expected an object, got {type(raw).__name__}")
    response = (fields.text(raw, "response", where) or "").strip()
    annotations = raw.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise DataRecipeError(f"{where}: field 'annotations' must be an object")
    ratings = {a: _rating(_aspect(annotations, a).get("Rating")) for a in ASPECTS}
    valid = [r for r in ratings.values() if r is not None]
    mean = sum(valid) / len(valid) if valid else _fine_grained(raw.get("fine-grained_score"))
    why = justification(annotations, fields.text(raw, "critique", where, optional=True))
    if not response:
        dropped["completion_empty"] += 1
    elif mean is None:
        dropped["completion_no_rating"] += 1
    elif not why:
        dropped["completion_no_rationale"] += 1
    else:
        score = rubric_score(mean, ratings["instruction_following"])
        return Completion(response, float(mean), score, why)
    return None


def read_item(where: str, row: dict[str, Any], dropped: Counter[str]) -> Item:
    """One UltraFeedback row; structural problems raise, naming the row and the field."""
    instruction = fields.text(row, "instruction", where).strip()
    raw = row.get("completions")
    if not isinstance(raw, list):
        raise DataRecipeError(f"{where}: field 'completions' must be a list, got "
                              f"{type(raw).__name__} (is this openbmb/UltraFeedback?)")
    completions = [_completion(c, f"{where}: completions[{i}]", dropped)
                   for i, c in enumerate(raw)]
    source = fields.text(row, "source", where, optional=True) or "ultrafeedback"
    return Item(where, source, instruction, tuple(c for c in completions if c is not None))
