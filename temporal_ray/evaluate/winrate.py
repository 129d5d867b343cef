"""Pairwise win rates against a reference model, from judge verdicts in both orders. Pure.

For each held-out prompt a judge compares the model's answer with the reference model's
twice, once with the model's answer shown first and once second, to cancel position bias. A
verdict is "first", "second", "tie", or None when the judge's text could not be parsed.
- Per order the model scores 1 (preferred), 0.5 (tie) or 0; a prompt's preference is the mean
  of its parsed orders, so two orders that disagree make a tie. A prompt with no parsed
  verdict has no preference: it is left out of the rates and counted as unparsed.
- `win_rate`: the mean preference (ties count half, as in AlpacaEval), with wins, ties and
  losses counted, and the mean answer length of both sides beside it, since self-rewarding
  is known to lengthen answers.
- `length_controlled_win_rate`, in the spirit of AlpacaEval 2.0 (Dubois et al., 2024): fit
      P(model preferred) = sigmoid(theta + phi * tanh((len_model - len_ref) / scale))
  by maximum likelihood (Newton's method, a preference of 0.5 counting as half a win; `scale`
  the standard deviation of the length differences), and report sigmoid(theta), the win rate
  predicted for answers of equal length. AlpacaEval's per-instruction difficulty term is
  left out: it needs many models judged on the same prompts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

VERDICT_PATTERN = r"Winner:\s*(first|second|tie)"
RIDGE = 1e-4  # keeps the fit finite when one length side always wins


def parse_verdict(text: str, pattern: str = VERDICT_PATTERN) -> str | None:
    """The last verdict in a judge's text ("first", "second" or "tie"), or None."""
    found = re.findall(pattern, text, flags=re.IGNORECASE)
    return found[-1].lower() if found else None


def order_score(verdict: str | None, model_first: bool) -> float | None:
    """The model's score from one order's verdict: 1 preferred, 0.5 tie, 0 not, None unparsed."""
    if verdict is None:
        return None
    if verdict == "tie":
        return 0.5
    return 1.0 if (verdict == "first") == model_first else 0.0


def prompt_preference(model_first_verdict: str | None,
                      model_second_verdict: str | None) -> float | None:
    """One prompt's preference for the model, from the verdicts of both orders."""
    scores = [s for s in (order_score(model_first_verdict, True),
                          order_score(model_second_verdict, False)) if s is not None]
    return sum(scores) / len(scores) if scores else None


def win_rate(preferences: Sequence[float | None], model_lengths: Sequence[float],
             reference_lengths: Sequence[float]) -> dict[str, Any]:
    """The win rate of per-prompt preferences, with counts and mean lengths of parsed prompts."""
    if not len(preferences) == len(model_lengths) == len(reference_lengths):
        raise ValueError("one model and one reference length per preference")
    kept = [i for i, p in enumerate(preferences) if p is not None]
    prefs = [preferences[i] for i in kept]
    n = len(prefs)
    return {
        "prompts": len(preferences),
        "unparsed": len(preferences) - n,
        "wins": sum(p > 0.5 for p in prefs),
        "ties": sum(p == 0.5 for p in prefs),
        "losses": sum(p < 0.5 for p in prefs),
        "win_rate": sum(prefs) / n if n else None,
        "length_controlled_win_rate": length_controlled_win_rate(
            prefs, [model_lengths[i] - reference_lengths[i] for i in kept]),
        "mean_model_length": sum(model_lengths[i] for i in kept) / n if n else None,
        "mean_reference_length": sum(reference_lengths[i] for i in kept) / n if n else None,
    }


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def length_controlled_win_rate(preferences: Sequence[float],
                               length_differences: Sequence[float]) -> float | None:
    """sigmoid(theta) of the logistic fit above; None without preferences."""
    n = len(preferences)
    if n == 0:
        return None
    mean_diff = sum(length_differences) / n
    scale = math.sqrt(sum((d - mean_diff) ** 2 for d in length_differences) / n) or 1.0
    xs = [math.tanh(d / scale) for d in length_differences]
    theta = phi = 0.0
    for _ in range(100):
        ps = [_sigmoid(theta + phi * x) for x in xs]
        # Gradient and (negated) Hessian of the penalised log-likelihood.
        g0 = sum(y - p for y, p in zip(preferences, ps)) - RIDGE * theta
        g1 = sum((y - p) * x for y, p, x in zip(preferences, ps, xs)) - RIDGE * phi
        w = [p * (1 - p) for p in ps]
        h00 = sum(w) + RIDGE
        h01 = sum(wi * x for wi, x in zip(w, xs))
        h11 = sum(wi * x * x for wi, x in zip(w, xs)) + RIDGE
        det = h00 * h11 - h01 * h01
        step0 = (h11 * g0 - h01 * g1) / det
        step1 = (h00 * g1 - h01 * g0) / det
        theta, phi = theta + step0, phi + step1
        if abs(step0) < 1e-10 and abs(step1) < 1e-10:
            break
    return _sigmoid(theta)
