"""The experiment driver: iterate a method from M0, one prompt chunk per iteration.

    M_0 = model.path
    for i in range(iterations):  M_{i+1} = iteration(stages_i, prompts_i, present=M_i, past=M_0)

Resuming is the default: rerunning the same command skips every finished stage. A rerun whose
config differs from the one the run directory was started with is refused (naming the changed
fields) unless forced, since finished stages would no longer match the config.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from temporal_ray.config import Config, as_source
from temporal_ray.core.prompts import PromptFileError, iteration_chunk
from temporal_ray.engines.kept_pool import KeptPools
from temporal_ray.engines.preflight import check_model, drop_overlong
from temporal_ray.inputs.load import load_prompts
from temporal_ray.run.cluster_nodes import NodeTimeline
from temporal_ray.run.compute import method_compute
from temporal_ray.run.iteration import IterationStages, StopAfterStage
from temporal_ray.run.methods import METHODS
from temporal_ray.run.report import describe_compute, describe_engines, iteration_header
from temporal_ray.run.session import absolute_paths, check_config, start_ray
from temporal_ray.storage.lock import RunLock
from temporal_ray.storage.run_dir import RunDir
from temporal_ray.terminal import echo
from temporal_ray.tracking import Tracker
from temporal_ray.training.plan import check_fits

logger = logging.getLogger(__name__)


def run_experiment(cfg: Config, force: bool = False, until: str | None = None,
                   redo: str | None = None,
                   parent: Tracker | None = None) -> list[dict[str, Any]]:
    """Run (or resume) an experiment; returns one summary record per iteration.

    `redo` (e.g. "iter_0/scores_present_past") first deletes that finished stage and every
    stage that finished after it; `until` stops once the named stage has finished. Together
    they replay one stage, to debug it. The run is tracked (cfg.tracking) as a run of its
    own, or nested in `parent`'s (an experiment that runs several methods)."""
    cfg = absolute_paths(cfg)
    prompt_set = load_prompts(cfg.data.prompts, cfg.data.prompt_field)
    check_model(cfg.model.path)
    truncate = cfg.generation.overlong == "truncate"
    rows, overlong = drop_overlong(prompt_set.rows, cfg.model.path,
                                   cfg.generation.max_new_tokens, cfg.engine.max_model_len,
                                   truncate=truncate)
    if not rows:
        raise PromptFileError(f"{as_source(cfg.data.prompts).path}: every prompt is longer "
                              "than the model's context minus generation.max_new_tokens")
    dropped = {**prompt_set.dropped, "truncated" if truncate else "too_long": overlong}
    check_fits(cfg, "dpo")  # a DPO stage that cannot fit its GPUs stops here, not hours in
    run = RunDir(cfg.storage.run_dir)
    with RunLock(run):
        check_config(run, cfg, force, sections=cfg.run_sections())
        if redo:
            logger.info("redo: deleted %s", ", ".join(run.discard_from(redo)))
        method = cfg.method.name.value
        tracker = (parent.child(method, {"method": method}, method=method) if parent
                   else Tracker.open(cfg, run, method, {"method": method}, method=method))
        tracker.log_config(cfg)  # nested: this method's own (name, iterations, run_dir)
        start_ray(cfg)
        nodes = NodeTimeline(tracker)
        nodes.sample("start")
        with KeptPools() as pools:
            summary = iterate_method(cfg, run, pools, rows, dropped, until, tracker, nodes)
        if len(summary) == cfg.method.iterations:
            tracker.log_artifact(run.path("summary.json"))
            tracker.finish()
        return summary


def iterate_method(cfg: Config, run: RunDir, pools: KeptPools,
                   prompts_rows: list[dict[str, str]], prompts_dropped: dict[str, int],
                   until: str | None = None, tracker: Tracker | None = None,
                   nodes: NodeTimeline | None = None) -> list[dict[str, Any]]:
    """M_{i+1} = iteration(M_i) for each prompt chunk; one summary record per iteration.
    The summary also holds `nodes`: alive nodes by type at the start and as each stage ended."""
    tracker = tracker or Tracker.off()
    nodes = nodes or NodeTimeline(tracker)
    iterate = METHODS[cfg.method.name.value].iteration
    past = present = cfg.model.path
    summary = []
    for i in range(cfg.method.iterations):
        started = time.time()
        stages = IterationStages(cfg, run, i, pools, until, tracker, nodes)
        echo(iteration_header(i, cfg.method.name.value))  # each stage's line follows as it ends
        try:
            prompts = stages.prompts(iteration_chunk(prompts_rows, i,
                                                     cfg.data.prompts_per_iteration))
            present = iterate(stages, prompts, present=present, past=past)
        except StopAfterStage as stop:
            echo(f"stopped after {stop} (--until)")
            return summary
        summary.append({"iteration": i, "model": present, "stages": stages.records,
                        "seconds": round(time.time() - started, 1)})
        tracker.log_metrics("iteration", {"seconds": summary[-1]["seconds"]}, step=i)
        run.write_text("summary.json", json.dumps(
            {"method": cfg.method.name.value, "prompts_dropped": prompts_dropped,
             "engines": pools.counts(), "iterations": summary,
             "compute": method_compute(run, i + 1), "nodes": nodes.samples},
            indent=2, default=str))
    if until:
        logger.warning("--until %s: this run has no such stage; it ran to the end", until)
    if any(prompts_dropped.values()):
        logger.warning("prompts dropped before the run: %s", prompts_dropped)
    echo(f"final model: {present}")
    echo(describe_compute(method_compute(run, cfg.method.iterations)))
    echo(describe_engines(pools.counts()))
    return summary
