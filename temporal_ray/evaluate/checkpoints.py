"""Which checkpoints a run has: M0 and each finished iteration's model, by name.

A single-method run (`temporal-ray run`) keeps `summary.json` and `config.yaml` at its root:
its checkpoints are m0, m1, ... A comparison (`temporal-ray miniature`, run/compare.py) keeps one
such directory per method: self_rewarding/m1, temporal/m1, ... and one shared m0. The names
are what eval.checkpoints selects and what the report shows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import yaml

from temporal_ray.config import Method
from temporal_ray.run.methods import METHODS
from temporal_ray.storage.run_dir import RunDir


@dataclass(frozen=True)
class Checkpoint:
    name: str
    method: str
    """The method that made it; "" for M0."""
    iteration: int
    """k of M_k (0 for M0)."""
    path: str

    @property
    def dpo_runs(self) -> int:
        """What the checkpoint cost: the x axis of equal-compute plots."""
        method = METHODS.get(self.method)
        return self.iteration * (method.dpo_runs if method else 1)


class NoCheckpointsError(ValueError):
    """The run directory holds no finished run to evaluate."""


def _method_run(run: RunDir, prefix: str) -> tuple[str, list[Checkpoint]] | None:
    summary = run.read_text(f"{prefix}summary.json")
    config = run.read_text(f"{prefix}config.yaml")
    if summary is None or config is None:
        return None
    summary_data = json.loads(summary)
    method = summary_data["method"]
    m0 = yaml.safe_load(config)["model"]["path"]
    models = [Checkpoint(f"{prefix}m{it['iteration'] + 1}", method, it["iteration"] + 1,
                         it["model"]) for it in summary_data["iterations"]]
    return m0, models


def discover_checkpoints(run_dir: str) -> list[Checkpoint]:
    """M0 first, then each method's models in iteration order."""
    run = RunDir(run_dir)
    found = [r for r in [_method_run(run, "")] + [_method_run(run, f"{m.value}/")
                                                  for m in Method] if r]
    if not found:
        raise NoCheckpointsError(
            f"{run.uri} holds no finished run (no summary.json at its root or under "
            f"{', '.join(m.value + '/' for m in Method)}): run `temporal-ray run` or "
            "`temporal-ray miniature` with this storage.run_dir first")
    m0_paths = {m0 for m0, _ in found}
    if len(m0_paths) > 1:
        raise NoCheckpointsError(f"the runs under {run.uri} start from different models "
                                 f"({', '.join(sorted(m0_paths))}): evaluate them one by one")
    checkpoints = [Checkpoint("m0", "", 0, m0_paths.pop())]
    for _, models in found:
        checkpoints += models
    return checkpoints


def select(checkpoints: list[Checkpoint], names: list[str]) -> list[Checkpoint]:
    """The named checkpoints (all when `names` is empty), with an error naming what is known."""
    if not names:
        return checkpoints
    by_name = {c.name: c for c in checkpoints}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise NoCheckpointsError(f"eval.checkpoints: no checkpoint named {', '.join(unknown)} "
                                 f"(this run has {', '.join(by_name)})")
    return [by_name[n] for n in names]
