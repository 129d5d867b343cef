"""A method's compute, measured: the tokens its iterations' stages counted, summed.

Each generate, judge and DPO stage writes its token counts into its manifest
(stages/generate.py, stages/judge.py, training/dpo_recipe.py); this module only adds them up
over a run's first `iterations` iterations, so that methods said to run at equal compute can
be checked to. Stages outside iter_<i>/ (the SFT of M0, an evaluation) are not a method's and
are not counted.
"""

from __future__ import annotations

import re
from typing import Any

from temporal_ray.storage.run_dir import RunDir

TOKEN_KEYS: dict[str, tuple[str, ...]] = {
    "generate": ("generated_prompt_tokens", "generated_tokens"),
    "judge": ("judge_prompt_tokens", "judge_generated_tokens"),
    "dpo": ("dpo_forward_tokens", "dpo_backward_tokens", "reference_forward_tokens"),
}
"""Per stage kind, the manifest keys that count its tokens."""
COMPUTE_KEYS: tuple[str, ...] = tuple(key for keys in TOKEN_KEYS.values() for key in keys)
FORWARD_KEYS: tuple[str, ...] = tuple(key for key in COMPUTE_KEYS
                                      if key != "dpo_backward_tokens")
"""The keys `total_tokens` adds: every token a model read or produced in a forward pass (the
backward tokens are a subset of the DPO forward tokens, so they are left out of the sum)."""

_ITERATION = re.compile(r"^iter_(\d+)/")


def method_compute(run: RunDir, iterations: int | None = None) -> dict[str, Any]:
    """The summed token counts of the finished stages of iterations 0..iterations-1 (all
    iterations when None), with `total_tokens`, the number of DPO runs and of iterations
    counted, and `stages_without_counts`: stages of a counting kind whose manifest has no
    counts (written before stages counted tokens), so a total is known to be short."""
    totals: dict[str, Any] = dict.fromkeys(COMPUTE_KEYS, 0)
    missing, dpo_runs, seen = [], 0, set()
    for stage in run.finished_stages():
        match = _ITERATION.match(stage)
        if match is None or (iterations is not None and int(match.group(1)) >= iterations):
            continue
        manifest = run.finished(stage).manifest
        keys = TOKEN_KEYS.get(manifest.get("kind", ""), ())
        if not keys:
            continue
        seen.add(int(match.group(1)))
        dpo_runs += manifest["kind"] == "dpo"
        if any(key not in manifest for key in keys):
            missing.append(stage)
        for key in keys:
            totals[key] += int(manifest.get(key) or 0)
    totals["total_tokens"] = sum(totals[key] for key in FORWARD_KEYS)
    return {**totals, "dpo_runs": dpo_runs, "iterations": len(seen),
            "stages_without_counts": missing}


def compute_ratios(compute: dict[str, dict[str, Any]], base: str) -> dict[str, dict[str, Any]]:
    """Each method's counts divided by method `base`'s, key by key (None where base's is 0)."""
    reference = compute[base]
    return {method: {key: (counts[key] / reference[key] if reference.get(key) else None)
                     for key in (*COMPUTE_KEYS, "total_tokens")}
            for method, counts in compute.items() if method != base}
