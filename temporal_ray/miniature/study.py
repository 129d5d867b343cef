"""`temporal-ray study` (`make study`): the miniature over N seeds, summarised with intervals.

    for each seed s: the miniature (recipe.py) in <study>/seed_<s>, every seed field of the
                     config shifted by 1000 s: its own data, base model, SFT, DPO and sampling
    -> study_summary.summarise: means and 95% bootstrap intervals, the paired comparison
    -> study.json, study.md, study.png in <study> (each published atomically)

<study> is --out, or storage.run_dir + "-study". Resumable per seed: a seed whose results.json
exists is read, not run again, and an unfinished one resumes its stages (the miniature's own
resume). The study's config is kept in <study>/config.yaml and a changed one is refused unless
--force, since finished seeds would no longer match it. All seeds share one Ray session: the
recipe starts Ray only when none is running in this process.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel

from temporal_ray.config import ConfigError, Method
from temporal_ray.miniature.config import MiniatureRunConfig
from temporal_ray.miniature.recipe import run_miniature
from temporal_ray.miniature.study_report import markdown, plot
from temporal_ray.miniature.study_summary import summarise
from temporal_ray.run.methods import METHODS
from temporal_ray.run.session import absolute, check_config
from temporal_ray.storage.lock import RunLock
from temporal_ray.storage.run_dir import RunDir
from temporal_ray.terminal import echo

SEED_STRIDE = 1000
"""Seed s adds s x 1000 to every seed field: far enough apart that the per-row seeds derived
from a base seed (generation: base + row offsets) do not overlap between study seeds."""
RESULTS = "results.json"
Model = TypeVar("Model", bound=BaseModel)


def shift_seeds(model: Model, offset: int) -> Model:
    """A copy of `model` with `offset` added to every int field named `seed`, at any depth
    (today miniature.seed, generation.seed, sft.seed and dpo.seed): a seed field added later
    is shifted without a change here."""
    update = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if name == "seed" and isinstance(value, int) and not isinstance(value, bool):
            update[name] = value + offset
        elif (shifted := _shift(value, offset)) is not value:
            update[name] = shifted
    return model.model_copy(update=update) if update else model


def _shift(value: Any, offset: int) -> Any:
    """`value` with its seeds shifted; the same object where it holds no model."""
    if isinstance(value, BaseModel):
        return shift_seeds(value, offset)
    if isinstance(value, dict):
        items = {k: _shift(v, offset) for k, v in value.items()}
        return items if any(items[k] is not value[k] for k in value) else value
    if isinstance(value, list | tuple):
        items = [_shift(v, offset) for v in value]
        return type(value)(items) if any(a is not b for a, b in zip(items, value)) else value
    return value


def seed_config(cfg: MiniatureRunConfig, seed: int, root: str) -> MiniatureRunConfig:
    """The miniature of study seed `seed`: its seeds shifted, run in <root>/seed_<seed>."""
    shifted = shift_seeds(cfg, seed * SEED_STRIDE)
    return shifted.model_copy(update={"storage": shifted.storage.model_copy(
        update={"run_dir": f"{root}/seed_{seed}"})})


def check_equal_compute(iterations: dict[Method, int]) -> None:
    """Both methods, with the same DPO runs behind their final checkpoints (run/methods.py's
    dpo_runs: 4 Self-Rewarding iterations cost what 2 temporal ones do)."""
    runs = {m.value: n * METHODS[m.value].dpo_runs for m, n in iterations.items()}
    if set(runs) != set(METHODS) or len(set(runs.values())) != 1:
        given = ", ".join(f"{m} {iterations[Method(m)]} iterations = {r} DPO runs"
                          for m, r in runs.items())
        raise ConfigError(
            f"the study compares the methods at equal compute, but miniature.iterations gives "
            f"{given or 'no method'}. Give both methods the same DPO runs, e.g. "
            "miniature.iterations={self_rewarding: 4, temporal: 2}.")


def run_seed(cfg: MiniatureRunConfig, seed: int, root: str, force: bool) -> dict[str, Any]:
    """Seed `seed`'s results: read when that seed finished, else run (or resumed)."""
    seed_cfg = seed_config(cfg, seed, root)
    run = RunDir(seed_cfg.storage.run_dir)
    if run.read_text(RESULTS) is None:
        echo(f"== study seed {seed}: {run.uri}")
        run_miniature(seed_cfg, force=force)
    else:
        echo(f"== study seed {seed}: finished, reading {run.uri}/{RESULTS}")
    # Read back what the recipe wrote, so a fresh and a resumed seed give the same dict.
    return json.loads(run.read_text(RESULTS))


def study_root(cfg: MiniatureRunConfig, out: str | None) -> str:
    root = out or f"{cfg.storage.run_dir.rstrip('/')}-study"
    if "://" in root:
        raise ConfigError("the study runs the miniature, which builds its model and data on "
                          "local disk: give --out (or storage.run_dir) as a local path")
    return absolute(root)


def run_study(cfg: MiniatureRunConfig, seeds: int = 5, out: str | None = None,
              force: bool = False) -> dict[str, Any]:
    """Run (or resume) `seeds` seeds of the miniature and publish the study; returns
    study.json's dict."""
    if seeds < 1:
        raise ConfigError(f"--seeds {seeds}: give 1 or more (5 by default)")
    check_equal_compute(cfg.miniature.iterations)
    study = RunDir(study_root(cfg, out))
    with RunLock(study):
        check_config(study, cfg, force)
        results = [run_seed(cfg, s, study.uri, force) for s in range(seeds)]
        summary = summarise(results, list(range(seeds)))
        study.write_text("study.json", json.dumps(summary, indent=2, allow_nan=False))
        study.write_text("study.md", markdown(summary))
        study.write_bytes("study.png", plot(summary))
    echo(f"study of {seeds} seeds: {study.uri}/study.md")
    return summary
