"""Measurements of method.md's "what the paper measures", for GPU runs and the miniature alike.

In:  plain numbers, rows and tensors: responses with a grader, judge scores with the rubric
     truth, DPO pair rows {prompt, chosen, rejected, chosen_score, rejected_score}, a DPO
     metrics.json dict, and (for the feature metrics only) a loaded causal LM and its tokenizer.
Out: floats and small JSON-ready dicts; an undefined statistic is None, never NaN.
Pure: no Ray, no DeepSpeed, nothing loaded or written here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from temporal_ray.core.batching import prompt_text

Number = float | int


# ------------------------------------------------------------------ accuracy and agreement
def accuracy(results: Sequence[Any], references: Sequence[Any] | None = None,
             grade_fn: Callable[[Any, str], bool] | None = None) -> float:
    """Share correct. Either `results` are booleans, or responses graded by
    `grade_fn(reference, response)` against `references` (an exact-answer check)."""
    if grade_fn is not None:
        if references is None or len(references) != len(results):
            raise ValueError("grade_fn needs one reference per response")
        results = [grade_fn(ref, resp) for ref, resp in zip(references, results)]
    if not results:
        raise ValueError("accuracy of no responses")
    return sum(bool(r) for r in results) / len(results)


def rankdata(values: Sequence[Number]) -> list[float]:
    """1-based ranks; tied values share the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def pearson(x: Sequence[Number], y: Sequence[Number]) -> float | None:
    """Pearson correlation; None with fewer than two points or a constant side."""
    if len(x) != len(y):
        raise ValueError("pearson of sequences of different lengths")
    n = len(x)
    if n < 2:
        return None
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def spearman(x: Sequence[Number], y: Sequence[Number]) -> float | None:
    """Spearman's rho: the Pearson correlation of the ranks (ties averaged)."""
    return pearson(rankdata(x), rankdata(y))


def judge_agreement(judge_scores: Sequence[Number | None], true_scores: Sequence[Number],
                    tolerance: float = 0.5) -> dict[str, Any]:
    """How well a judge's scores match the rubric truth, candidate by candidate.

    - count: candidates; unparsed: how many the judge gave no score (None); unparsed_share.
    - agreement: share of ALL candidates whose judge score is within `tolerance` of the truth
      (|judge - truth| <= tolerance; for integer scores that is exact agreement). An unparsed
      score counts as a disagreement; agreement_parsed is the same share over parsed ones.
    - mean_abs_error, spearman (ties averaged) and pearson: over the parsed candidates only;
      None when undefined (no parsed candidate, fewer than two, or a constant side).
    """
    if len(judge_scores) != len(true_scores):
        raise ValueError("one true score per judge score")
    parsed = [(j, t) for j, t in zip(judge_scores, true_scores) if j is not None]
    hits = sum(abs(j - t) <= tolerance for j, t in parsed)
    n = len(true_scores)
    js, ts = [j for j, _ in parsed], [t for _, t in parsed]
    return {
        "count": n,
        "unparsed": n - len(parsed),
        "unparsed_share": (n - len(parsed)) / n if n else None,
        "agreement": hits / n if n else None,
        "agreement_parsed": hits / len(parsed) if parsed else None,
        "mean_abs_error": sum(abs(j - t) for j, t in parsed) / len(parsed) if parsed else None,
        "spearman": spearman(js, ts),
        "pearson": pearson(js, ts),
    }


def ranking_auc(positives: Sequence[Number], negatives: Sequence[Number]) -> float | None:
    """The chance that a positive scores above a negative, ties counting half (the area under
    the ROC curve); 0.5 is a score that does not tell them apart. None when a side is empty."""
    if not positives or not negatives:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def pair_score_stats(pairs: Sequence[dict]) -> dict[str, Any]:
    """Mean chosen and rejected judge scores of DPO pairs and their mean gap (chosen - rejected):
    the gap is what method.md reports shrinking under Self-Rewarding. Means are None with no
    pairs."""
    n = len(pairs)
    chosen = [float(p["chosen_score"]) for p in pairs]
    rejected = [float(p["rejected_score"]) for p in pairs]
    return {
        "count": n,
        "mean_chosen_score": sum(chosen) / n if n else None,
        "mean_rejected_score": sum(rejected) / n if n else None,
        "mean_gap": sum(c - r for c, r in zip(chosen, rejected)) / n if n else None,
    }


# ------------------------------------------------------------------ representation similarity
def cosine(a: torch.Tensor | Sequence[Number], b: torch.Tensor | Sequence[Number]) -> float:
    """Cosine similarity of two vectors (in float64); 0.0 when either is the zero vector."""
    a = torch.as_tensor(a, dtype=torch.float64).flatten()
    b = torch.as_tensor(b, dtype=torch.float64).flatten()
    norms = a.norm() * b.norm()
    return float(a @ b / norms) if norms > 0 else 0.0


def _encode(tokenizer: Any, prompt: str, response: str, max_length: int | None,
            system: str = "") -> tuple[list[int], int]:
    """Token ids of chat-templated prompt + response and the number of response tokens. Prompt
    and response are tokenised apart (as in SFT/DPO) so the response boundary is exact; past
    `max_length` the prompt keeps its tail and the response loses its end."""
    prompt_ids = tokenizer(prompt_text(tokenizer, prompt, system),
                           add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    if not response_ids:
        raise ValueError("empty response: no response tokens to pool")
    if max_length is not None and len(prompt_ids) + len(response_ids) > max_length:
        prompt_ids = prompt_ids[-(max_length - 1):] if max_length > 1 else []
        response_ids = response_ids[: max_length - len(prompt_ids)]
    return prompt_ids + response_ids, len(response_ids)


def _default_max_length(model: Any) -> int | None:
    return getattr(getattr(model, "config", None), "max_position_embeddings", None)


@torch.no_grad()
def pooled_features_batch(model: Any, tokenizer: Any, items: Sequence[tuple[str, ...]],
                          max_length: int | None = None) -> torch.Tensor:
    """[len(items), hidden] float32: for each (prompt, response) or (prompt, response,
    system), the model's last-layer hidden states mean-pooled over the response tokens only.
    One right-padded forward pass."""
    max_length = max_length or _default_max_length(model)
    encoded = [_encode(tokenizer, item[0], item[1], max_length, *item[2:]) for item in items]
    width = max(len(ids) for ids, _ in encoded)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    attention = torch.zeros((len(encoded), width), dtype=torch.long)
    response_mask = torch.zeros((len(encoded), width), dtype=torch.float32)
    for i, (ids, n_response) in enumerate(encoded):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention[i, : len(ids)] = 1
        response_mask[i, len(ids) - n_response: len(ids)] = 1.0
    was_training = model.training
    model.eval()  # no dropout in a measurement
    try:
        out = model(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                    output_hidden_states=True)
    finally:
        model.train(was_training)
    hidden = out.hidden_states[-1].float().cpu()  # [B, T, H], after the final norm
    summed = (hidden * response_mask.unsqueeze(-1)).sum(dim=1)
    return summed / response_mask.sum(dim=1, keepdim=True)


def mean_pooled_response_features(model: Any, tokenizer: Any, prompt: str, response: str,
                                  max_length: int | None = None) -> torch.Tensor:
    """[hidden] float32: method.md's (default) feature of one response: encode the chat-templated
    prompt + response with `model`, mean-pool the last layer over the response tokens."""
    return pooled_features_batch(model, tokenizer, [(prompt, response)], max_length)[0]


def pair_cosines(model: Any, tokenizer: Any, pairs: Sequence[dict], batch_size: int = 16,
                 max_length: int | None = None) -> list[float | None]:
    """Per pair row {prompt, chosen, rejected}: the cosine of the chosen and rejected response
    features; None for a pair with an empty chosen or rejected (nothing to pool)."""
    usable = [i for i, p in enumerate(pairs) if p["chosen"] and p["rejected"]]
    result: list[float | None] = [None] * len(pairs)
    for start in range(0, len(usable), batch_size):
        chunk = usable[start: start + batch_size]
        items = [(pairs[i]["prompt"], pairs[i][side], pairs[i].get("system") or "")
                 for side in ("chosen", "rejected") for i in chunk]
        feats = pooled_features_batch(model, tokenizer, items, max_length)
        for k, i in enumerate(chunk):
            result[i] = cosine(feats[k], feats[len(chunk) + k])
    return result


def chosen_rejected_cosine(model: Any, tokenizer: Any, pairs: Sequence[dict],
                           batch_size: int = 16, max_length: int | None = None) -> float | None:
    """Mean chosen-vs-rejected feature cosine over the pairs (rising under Self-Rewarding per
    the paper); pairs with an empty side are left out; None when no pair is left."""
    values = [c for c in pair_cosines(model, tokenizer, pairs, batch_size, max_length)
              if c is not None]
    return sum(values) / len(values) if values else None


# ------------------------------------------------------------------ DPO
DPO_SUMMARY_KEYS = ("pairs", "margin_after", "train_reward_margin", "accuracy_after",
                    "train_reward_accuracy", "mean_grad_norm", "loss_before", "loss_after")


def dpo_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """The collapse-relevant fields of a DPO run's metrics.json (training/dpo_recipe.py):
    reward_margin = margin_after (implicit reward margin on the pairs after training),
    train_reward_margin and mean_grad_norm (means over the optimizer steps), plus the first and
    last steps' grad norm from `history`. Missing fields are None."""
    summary = {key: metrics.get(key) for key in DPO_SUMMARY_KEYS}
    summary["reward_margin"] = metrics.get("margin_after")
    history = metrics.get("history") or []
    norms = [h["grad_norm"] for h in history if "grad_norm" in h]
    summary["first_grad_norm"] = norms[0] if norms else None
    summary["last_grad_norm"] = norms[-1] if norms else None
    return summary
