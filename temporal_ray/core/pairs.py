"""Scored candidates to DPO pairs: the two strategies of method.md, as plain functions.

In:  scored candidate rows {prompt_id, prompt, system, role, sample_index, response, score};
     `score` is None when the judge gave no valid score.
Out: pair rows {prompt_id, prompt, system, chosen, rejected, chosen_score, rejected_score,
     chosen_role, rejected_role} and a count of dropped prompts by reason.

- `best_vs_worst`: standard Self-Rewarding (Yuan et al.): chosen = best, rejected = worst of
  the present model's samples.
- `anchored_rejection` (temporal, phase 1): chosen = best present sample, rejected = worst over
  present and past (M0) samples; gives D1 and the per-prompt selections phase 2 starts from
  (`PhaseOne`).
- `future_guided` (temporal, phase 2): the future model's best replaces the chosen when it
  scores higher than the present's best; the rejected stays; gives D2.

A pair is kept only when score(chosen) > score(rejected): ties are dropped. The rejected is
never the chosen's own text: a small model often samples one answer several times, and the
sampled judge scores its copies differently; such a pair has no DPO gradient (the chosen and
rejected log-ratios cancel) yet would count in the score gap. So the rejected is the worst
candidate whose text differs from the chosen's, and a prompt whose candidates are all one text
is dropped as `same_text`. Ties between equal scores are broken deterministically: the chosen
is the lowest sample index, the rejected prefers the past model, then the lowest sample index.
Pure: no Ray, no models.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from temporal_ray.core.rows import PairRow

Row = dict[str, Any]

TOO_FEW_SCORED = "too_few_scored"
NO_SCORED_PRESENT = "no_scored_present"
TIE = "tie"
SAME_TEXT = "same_text"


@dataclass
class PairSet:
    pairs: list[PairRow] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)


@dataclass(frozen=True)
class Selection:
    """One prompt's chosen and rejected candidates before the tie filter."""

    chosen: Row
    rejected: Row
    present_best: float


def _scored_by_prompt(rows: list[Row]) -> dict[str, list[Row]]:
    groups: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        groups[row["prompt_id"]]  # every prompt appears, scored or not
        if row.get("score") is not None:
            groups[row["prompt_id"]].append(row)
    return groups


def _best(rows: list[Row]) -> Row:
    return min(rows, key=lambda r: (-r["score"], r["sample_index"]))


def _worst(rows: list[Row], unlike: Row) -> Row | None:
    """The lowest-scored candidate whose text differs from `unlike` (the chosen), or None."""
    others = [r for r in rows if r["response"] != unlike["response"]]
    if not others:
        return None
    return min(others, key=lambda r: (r["score"], r["role"] != "past", r["sample_index"]))


def _pair(chosen: Row, rejected: Row) -> PairRow:
    return PairRow(
        prompt_id=chosen["prompt_id"],
        prompt=chosen["prompt"],
        system=chosen.get("system") or "",
        chosen=chosen["response"],
        rejected=rejected["response"],
        chosen_score=float(chosen["score"]),
        rejected_score=float(rejected["score"]),
        chosen_role=chosen["role"],
        rejected_role=rejected["role"],
    )


def _keep_if_ordered(selections: dict[str, Selection], result: PairSet) -> PairSet:
    for prompt_id in sorted(selections):
        chosen, rejected = selections[prompt_id].chosen, selections[prompt_id].rejected
        if rejected["response"] == chosen["response"]:  # phase 2's future best may be it
            result.dropped[SAME_TEXT] += 1
        elif chosen["score"] > rejected["score"]:
            result.pairs.append(_pair(chosen, rejected))
        else:
            result.dropped[TIE] += 1
    return result


def best_vs_worst(scored: list[Row]) -> PairSet:
    """Self-Rewarding pairs from one model's scored samples."""
    result = PairSet()
    selections = {}
    for prompt_id, rows in _scored_by_prompt(scored).items():
        if len(rows) < 2:
            result.dropped[TOO_FEW_SCORED] += 1
            continue
        best = _best(rows)
        worst = _worst(rows, unlike=best)
        if worst is None:
            result.dropped[SAME_TEXT] += 1
            continue
        selections[prompt_id] = Selection(best, worst, best["score"])
    return _keep_if_ordered(selections, result)


class PhaseOne(NamedTuple):
    """Temporal phase 1: each prompt's selection that phase 2 starts from, and D1."""

    selections: dict[str, Selection]
    d1: PairSet


def anchored_rejection(present: list[Row], past: list[Row]) -> PhaseOne:
    """Phase 1: chosen from the present model, rejected anchored in the past model (D1)."""
    result = PairSet()
    selections = {}
    present_groups, past_groups = _scored_by_prompt(present), _scored_by_prompt(past)
    for prompt_id in sorted(set(present_groups) | set(past_groups)):
        mine, old = present_groups.get(prompt_id, []), past_groups.get(prompt_id, [])
        if not mine:
            result.dropped[NO_SCORED_PRESENT] += 1
            continue
        if len(mine) + len(old) < 2:
            result.dropped[TOO_FEW_SCORED] += 1
            continue
        best = _best(mine)
        worst = _worst(mine + old, unlike=best)
        if worst is None:
            result.dropped[SAME_TEXT] += 1
            continue
        selections[prompt_id] = Selection(best, worst, best["score"])
    return PhaseOne(selections, _keep_if_ordered(selections, result))


SELECTED = ("prompt", "system", "role", "sample_index", "response", "score")
"""What phase 2 needs of a phase-1 chosen or rejected candidate."""


def selection_rows(phase_one: PhaseOne) -> list[Row]:
    """Phase 1's selections as rows, one per prompt (ties included: the future model may
    break them), so that phase 2 starts from what phase 1 stored (`phase_one_from`)."""
    return [{"prompt_id": prompt_id, "present_best": float(selection.present_best),
             **{f"chosen_{key}": selection.chosen[key] for key in SELECTED},
             **{f"rejected_{key}": selection.rejected[key] for key in SELECTED}}
            for prompt_id, selection in sorted(phase_one.selections.items())]


def phase_one_from(rows: list[Row], dropped: dict[str, int]) -> PhaseOne:
    """Phase 1 back from its selection rows and its drop counts (no D1 pairs: phase 2 does
    not read them)."""
    def candidate(row: Row, side: str) -> Row:
        return {"prompt_id": row["prompt_id"],
                **{key: row[f"{side}_{key}"] for key in SELECTED}}

    selections = {row["prompt_id"]: Selection(candidate(row, "chosen"),
                                              candidate(row, "rejected"), row["present_best"])
                  for row in rows}
    return PhaseOne(selections, PairSet(dropped=Counter(dropped)))


def future_guided(phase_one: PhaseOne, future: list[Row]) -> PairSet:
    """Phase 2: upgrade each phase-1 chosen to the future model's best where that scores
    higher than the present model's best; keep the phase-1 rejected (D2)."""
    # Prompts without a phase-1 selection stay dropped, for the reason phase 1 gave.
    result = PairSet(dropped=Counter({reason: count for reason, count in
                                      phase_one.d1.dropped.items() if reason != TIE}))
    future_groups = _scored_by_prompt(future)
    upgraded = {}
    for prompt_id, selection in phase_one.selections.items():
        candidates = future_groups.get(prompt_id, [])
        chosen = selection.chosen
        if candidates:
            best_future = _best(candidates)
            if best_future["score"] > selection.present_best:
                chosen = best_future
        upgraded[prompt_id] = Selection(chosen, selection.rejected, selection.present_best)
    return _keep_if_ordered(upgraded, result)


def pair_counts(result: PairSet) -> dict[str, Any]:
    chosen = [p["chosen_score"] for p in result.pairs]
    rejected = [p["rejected_score"] for p in result.pairs]
    return {
        "pairs": len(result.pairs),
        "dropped": dict(result.dropped),
        "mean_chosen_score": _mean(chosen),
        "mean_rejected_score": _mean(rejected),
        "score_gap": _mean(chosen) - _mean(rejected),
        "chosen_roles": {role: sum(p["chosen_role"] == role for p in result.pairs)
                         for role in sorted({p["chosen_role"] for p in result.pairs})},
    }


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")
