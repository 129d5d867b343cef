"""The paper's equal-compute comparison: each method for its own number of iterations, all from
the same M0 on the same prompt chunks, each in its own run directory <storage.run_dir>/<method>.

Self-Rewarding for 4 iterations against Temporal Self-Rewarding for 2 costs the same: a
temporal iteration runs two DPO updates and generates (and judges) 3K samples per prompt,
against one update and K samples.
"""

from __future__ import annotations

from temporal_ray.config import Config, Method
from temporal_ray.run.driver import run_experiment
from temporal_ray.run.session import absolute
from temporal_ray.terminal import echo
from temporal_ray.tracking import Tracker


def method_config(cfg: Config, method: Method, iterations: int) -> Config:
    """`cfg` running `method` for `iterations`, in its own subdirectory of the run directory."""
    return cfg.model_copy(update={
        "method": cfg.method.model_copy(update={"name": method, "iterations": iterations}),
        "storage": cfg.storage.model_copy(
            update={"run_dir": f"{cfg.storage.run_dir}/{method.value}"}),
    })


def run_comparison(cfg: Config, iterations: dict[Method, int], force: bool = False,
                   parent: Tracker | None = None) -> dict[Method, list[str]]:
    """Run (or resume) every method from cfg.model.path; returns each method's checkpoints,
    M0 first. Each method's run is tracked nested in `parent`'s, when given."""
    checkpoints = {}
    for method, count in iterations.items():
        echo(f"== {method.value}: {count} iterations from M0")
        summary = run_experiment(method_config(cfg, method, count), force=force,
                                 parent=parent)
        checkpoints[method] = [absolute(cfg.model.path)] + [s["model"] for s in summary]
    return checkpoints
