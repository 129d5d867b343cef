"""The experiment driver: iterate a method from M0, one prompt chunk per iteration.

    M_0 = model.path
    for i in range(iterations):  M_{i+1} = iteration(stages_i, prompts_i, present=M_i, past=M_0)

Resuming is the default: rerunning the same command skips every finished stage. A rerun whose
config differs from the one the run directory was started with is refused (naming the changed
fields) unless forced, since finished stages would no longer match the config.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import yaml

from temporal_ray.config import RUN_SECTIONS, Config, changed_fields, with_defaults
from temporal_ray.generate.kept_pool import releasing_kept_pools
from temporal_ray.methods import ITERATIONS
from temporal_ray.plan import check_fits
from temporal_ray.preflight import check_model, drop_overlong
from temporal_ray.prompts import PromptFileError, iteration_chunk, load_prompts
from temporal_ray.report import format_iteration
from temporal_ray.stages import IterationStages, StopAfterStage
from temporal_ray.storage import RunDir, RunLock


class ConfigChangedError(RuntimeError):
    """The run directory holds stages made with another config."""


def start_ray(cfg: Config) -> None:
    import ray

    if ray.is_initialized():
        return
    if cfg.ray.address or os.environ.get("RAY_ADDRESS"):
        # A cluster (or a `ray job submit` job): the job's own runtime env applies; passing
        # another one here would clash with it.
        ray.init(address=cfg.ray.address)
    else:
        # A local cluster of our own: "local" never joins another process's cluster, nor
        # trips over the address file a killed cluster left behind.
        ray.init(address="local", num_cpus=cfg.ray.num_cpus,
                 runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})


def check_config(run: RunDir, cfg: Config, force: bool,
                 sections: tuple[str, ...] | None = None) -> None:
    """Write the resolved config (only `sections` of it, when given), or refuse a resume
    whose config changed."""
    current = cfg.model_dump(mode="json")
    if sections:
        current = {name: current[name] for name in sections}
    saved = run.read_text("config.yaml")
    if saved is not None and not force:
        changed = changed_fields(with_defaults(yaml.safe_load(saved)), current)
        if changed:
            raise ConfigChangedError(
                f"{run.uri} was started with another config; changed: {', '.join(changed)}. "
                "Use another storage.run_dir, or pass --force to reuse the finished stages.")
    run.write_text("config.yaml", yaml.safe_dump(current, sort_keys=False))


def absolute(path: str) -> str:
    """A local path made absolute (Ray workers do not run in the driver's directory); URIs
    stay as they are."""
    return path if "://" in path else os.path.abspath(path)


def absolute_paths(cfg: Config) -> Config:
    """The config's local paths made absolute."""
    return cfg.model_copy(update={
        "model": cfg.model.model_copy(update={"path": absolute(cfg.model.path)}),
        "data": cfg.data.model_copy(update={"prompts": absolute(cfg.data.prompts)}),
        "storage": cfg.storage.model_copy(update={"run_dir": absolute(cfg.storage.run_dir)}),
    })


def run_experiment(cfg: Config, force: bool = False, until: str | None = None,
                   redo: str | None = None) -> list[dict[str, Any]]:
    """Run (or resume) an experiment; returns one summary record per iteration.

    `redo` (e.g. "iter_0/scores_present_past") first deletes that finished stage and every
    stage that finished after it; `until` stops once the named stage has finished. Together
    they replay one stage, to debug it."""
    cfg = absolute_paths(cfg)
    prompt_set = load_prompts(cfg.data.prompts, cfg.data.prompt_field)
    check_model(cfg.model.path)
    truncate = cfg.generation.overlong == "truncate"
    rows, overlong = drop_overlong(prompt_set.rows, cfg.model.path,
                                   cfg.generation.max_new_tokens, cfg.engine.max_model_len,
                                   truncate=truncate)
    if not rows:
        raise PromptFileError(f"{cfg.data.prompts}: every prompt is longer than the model's "
                              "context minus generation.max_new_tokens")
    dropped = {**prompt_set.dropped, "truncated" if truncate else "too_long": overlong}
    check_fits(cfg, "dpo")  # a DPO stage that cannot fit its GPUs stops here, not hours in
    run = RunDir(cfg.storage.run_dir)
    with RunLock(run):
        check_config(run, cfg, force, sections=RUN_SECTIONS)
        if redo:
            print(f"redo: deleted {', '.join(run.discard_from(redo))}", flush=True)
        start_ray(cfg)
        with releasing_kept_pools():
            return iterate_method(cfg, run, rows, dropped, until)


def iterate_method(cfg: Config, run: RunDir, prompts_rows: list[dict[str, str]],
                   prompts_dropped: dict[str, int], until: str | None = None
                   ) -> list[dict[str, Any]]:
    """M_{i+1} = iteration(M_i) for each prompt chunk; one summary record per iteration."""
    iterate = ITERATIONS[cfg.method.name.value]
    past = present = cfg.model.path
    summary = []
    for i in range(cfg.method.iterations):
        started = time.time()
        stages = IterationStages(cfg, run, i, until)
        try:
            prompts = stages.prompts(iteration_chunk(prompts_rows, i,
                                                     cfg.data.prompts_per_iteration))
            present = iterate(stages, prompts, present=present, past=past)
        except StopAfterStage as stop:
            print(format_iteration(i, cfg.method.name.value, stages.records), flush=True)
            print(f"stopped after {stop} (--until)", flush=True)
            return summary
        print(format_iteration(i, cfg.method.name.value, stages.records), flush=True)
        summary.append({"iteration": i, "model": present, "stages": stages.records,
                        "seconds": round(time.time() - started, 1)})
        run.write_text("summary.json", json.dumps(
            {"method": cfg.method.name.value, "prompts_dropped": prompts_dropped,
             "iterations": summary}, indent=2, default=str))
    if until:
        print(f"warning: --until {until}: this run has no such stage; it ran to the end",
              flush=True)
    if any(prompts_dropped.values()):
        print(f"prompts dropped before the run: {prompts_dropped}", flush=True)
    print(f"final model: {present}", flush=True)
    return summary
