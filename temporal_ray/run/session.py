"""What every command does before its work: start or join Ray, make local paths absolute (Ray
workers do not run in the driver's directory), and write the resolved config into the run
directory or refuse a resume whose config changed in a field that may change results (naming
the changed fields) unless forced, since finished stages would no longer match the config; a
change of where and how the work runs only (pool sizes, resources, Ray settings) goes on."""

from __future__ import annotations

import os

import yaml

from temporal_ray.config import Config, config_changes
from temporal_ray.storage.run_dir import RunDir


class ConfigChangedError(RuntimeError):
    """The run directory holds stages made with another config."""


# Ray Train settings for a local cluster of our own, read by each training run's controller:
# no preemption watcher (one machine, never preempted: an actor process less to start per run)
# and a 0.25 s health check instead of 2 s (the controller then notices a finished or failed
# worker group ~1 s sooner, each run; a poll is two tiny actor calls).
LOCAL_TRAIN_ENV = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
                   "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25"}


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
                 runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false",
                                           **LOCAL_TRAIN_ENV}})


def check_config(run: RunDir, cfg: Config, force: bool,
                 sections: tuple[str, ...] | None = None) -> None:
    """Write the resolved config (only `sections` of it, when given), or refuse a resume
    whose config changed in a field that may change results. A resume that changed only
    where and how the work runs (`Placement` fields: pool sizes, resources, Ray settings)
    goes on and says what changed. `force` skips the comparison."""
    current = cfg.model_dump(mode="json")
    if sections:
        current = {name: current[name] for name in sections}
    saved = run.read_text("config.yaml")
    if saved is not None and not force:
        changes = config_changes(yaml.safe_load(saved), current, type(cfg))
        refused = [c.field for c in changes if not c.placement]
        if refused:
            fine = [c.field for c in changes if c.placement]
            raise ConfigChangedError(
                f"{run.uri} was started with another config; changed: {', '.join(refused)}"
                + (f" (and {', '.join(fine)}, which a resume may change)" if fine else "")
                + ". Use another storage.run_dir, or pass --force to reuse the finished "
                "stages.")
        for change in changes:
            print(f"resume with a new placement: {change}", flush=True)
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
