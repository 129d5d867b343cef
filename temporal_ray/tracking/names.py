"""What is logged under which name: a config as parameters, a manifest as numbers and labels,
a training stage's metrics.json history as step curves. Pure: no tracking library here.

    config             dpo.beta, generation.samples, ...          (parameters, dotted)
    stage manifest     rows, seconds, dropped.tie, roles.present.scored, ...   (numbers)
                       stage, kind, model, ...                                  (labels)
    DPO step           dpo/loss, dpo/reward_margin, dpo/reward_accuracy, dpo/chosen_logps,
                       dpo/rejected_logps, dpo/grad_norm, dpo/lr, dpo/tokens_per_s, dpo/epoch
    SFT step           sft/loss, sft/grad_norm, sft/lr, sft/tokens_per_s, sft/epoch
"""

from __future__ import annotations

import math
from typing import Any

TRAINING_KINDS = ("dpo", "sft")
"""Stage kinds whose output holds a metrics.json with a per-step `history`."""

STEP_FIELDS = {
    "dpo": ("loss", "reward_margin", "reward_accuracy", "chosen_logps", "rejected_logps",
            "grad_norm", "lr", "tokens_per_s", "epoch"),
    "sft": ("loss", "grad_norm", "lr", "tokens_per_s", "epoch"),
}
"""The fields of a history entry logged per optimizer step (those an entry has)."""


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys; other values as they are."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def is_number(value: Any) -> bool:
    """A finite int or float (bools are labels: True is no measurement)."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def config_params(config: dict[str, Any]) -> dict[str, str]:
    """A config dump as parameters: every leaf under its dotted name, as text."""
    return {key: "" if value is None else str(value) for key, value in flatten(config).items()}


NOT_MEASURES = ("finished_at",)
"""Numbers of a manifest that measure nothing (a clock time)."""


def split_record(record: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """A manifest (or any record) as (numbers, labels); empty values (None, NaN, [], {})
    are left out."""
    numbers, labels = {}, {}
    for key, value in flatten(record).items():
        if key in NOT_MEASURES:
            continue
        if is_number(value):
            numbers[key] = float(value)
        elif isinstance(value, float) or value is None or value == [] or value == {}:
            continue  # a NaN or infinite mean (of nothing) measures nothing
        else:
            labels[key] = str(value)
    return numbers, labels


def step_points(kind: str, history: list[dict[str, Any]],
                offset: int = 0) -> list[tuple[str, float, int]]:
    """(name, value, step) for each optimizer step of a training stage's history; `offset`
    shifts the steps (a run-wide curve continues after the stages before it)."""
    points = []
    for entry in history:
        for field in STEP_FIELDS[kind]:
            if is_number(entry.get(field)):
                points.append((f"{kind}/{field}", float(entry[field]), offset + entry["step"]))
    return points


def stage_tags(key: str, kind: str | None, method: str | None) -> dict[str, str]:
    """What a stage's tracked run can be filtered on: `iter_0/model` -> iteration 0, stage
    model; a stage outside the iterations (`model` of an SFT run) has no iteration."""
    parts = key.split("/")
    tags = {"stage": parts[-1]}
    if len(parts) > 1 and parts[0].startswith("iter_"):
        tags["iteration"] = parts[0].removeprefix("iter_")
    if kind:
        tags["kind"] = kind
    if method:
        tags["method"] = method
    return tags
