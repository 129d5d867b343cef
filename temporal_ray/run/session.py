"""What every command does before its work: start or join Ray, make local paths absolute (Ray
workers do not run in the driver's directory) and models named by a Hugging Face Hub id local
snapshots (storage/hub.py), and write the resolved config into the run
directory or refuse a resume whose config changed in a field that may change results (naming
the changed fields) unless forced, since finished stages would no longer match the config; a
change of where and how the work runs only (pool sizes, resources, Ray settings) goes on.

Ray is quiet unless the command runs with --verbose (terminal.py): no INFO lines of its own,
no worker output on the driver's terminal (it stays in the session's log files), no Ray Data
progress bars or execution logs (each stage draws one bar of its own). Errors still reach the
user: a failed task, actor or Ray Train worker raises in the driver with the worker's
traceback, and warnings still print.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import yaml

from temporal_ray import terminal
from temporal_ray.config import Config, DataSource, EngineConfig, config_changes
from temporal_ray.storage.hub import resolve_model
from temporal_ray.storage.run_dir import RunDir

logger = logging.getLogger(__name__)


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
    quiet = not terminal.settings().verbose
    # The driver's own Ray logger from WARNING on, and no worker output here: ray.init's
    # documented knobs, which touch neither a job's runtime env nor the workers.
    logs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False} \
        if quiet else {}
    if cfg.ray.address or os.environ.get("RAY_ADDRESS"):
        # A cluster (or a `ray job submit` job): the job's own runtime env applies; passing
        # another one here would clash with it.
        context = ray.init(address=cfg.ray.address, **logs)
    else:
        # A local cluster of our own: "local" never joins another process's cluster, nor
        # trips over the address file a killed cluster left behind.
        context = ray.init(address="local", num_cpus=cfg.ray.num_cpus,
                           runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false",
                                                     **LOCAL_TRAIN_ENV}}, **logs)
    if quiet:
        quiet_ray_data()
        logger.info(_where_output_goes(context))


def _where_output_goes(context: Any) -> str:
    """One line in place of Ray's: its dashboard, and where the workers' output went."""
    dashboard = getattr(context, "dashboard_url", None)
    session = getattr(context, "address_info", {}).get("session_dir")
    if dashboard and "://" not in dashboard:
        dashboard = f"http://{dashboard}"
    return (f"Ray: {'dashboard ' + dashboard if dashboard else 'started'}; the workers' "
            f"output is in {session + '/logs' if session else 'the session logs'} "
            "(--verbose prints it here)")


class _BarsOffNotice(logging.Filter):
    """Drops Ray Data's warning that its progress bars are off: we turned them off."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Progress bars disabled")


def quiet_ray_data() -> None:
    """Ray Data in this driver without its progress bars and its INFO lines on the terminal
    (execution plans, each dataset's start and end, Parquet estimates, progress logged every
    few seconds where stdout is no terminal): Ray Data's documented DataContext settings and
    its logger's console handler (its file log, the session's logs/ray-data, keeps all)."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    for handler in logging.getLogger("ray.data").handlers:
        if handler.name == "console":
            handler.setLevel(logging.WARNING)
    notices = logging.getLogger("ray.data._internal.progress")
    if not any(isinstance(f, _BarsOffNotice) for f in notices.filters):
        notices.addFilter(_BarsOffNotice())


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
            logger.info("resume with a new placement: %s", change)
    run.write_text("config.yaml", yaml.safe_dump(current, sort_keys=False))


def absolute(path: str) -> str:
    """A local path made absolute (Ray workers do not run in the driver's directory); URIs
    stay as they are."""
    return path if "://" in path else os.path.abspath(path)


def absolute_source(source: str | DataSource) -> str | DataSource:
    """A data source with a local path made absolute; a Hub dataset name (a path that is not
    here and has no file suffix) and URIs stay as they are."""
    path = source if isinstance(source, str) else source.path
    kind = "auto" if isinstance(source, str) else source.format
    if "://" in path or kind == "hf" or not (os.path.exists(path) or Path(path).suffix):
        return source
    return os.path.abspath(path) if isinstance(source, str) else \
        source.model_copy(update={"path": os.path.abspath(path)})


def model_dir(path: str, cfg: Config, field: str) -> str:
    """The model named by the config's `field` as a directory every worker reads: a local
    path made absolute, a URI as it is, a Hub id's snapshot in storage.hub_cache
    (storage/hub.py), downloaded there once. Run on the driver before any Ray work."""
    return resolve_model(path, cfg.storage.hub_cache, field)


def served_elsewhere(engine: EngineConfig) -> bool:
    """An `http` engine's model is the id of a model an endpoint serves: no directory."""
    return engine.kind == "http"


def absolute_paths(cfg: Config) -> Config:
    """The config's local paths made absolute and its Hub models resolved to their snapshots
    (model.path, and judge.model where a pool of ours runs it)."""
    judge = cfg.judge
    if judge.kind == "llm" and judge.model and not served_elsewhere(judge.engine or cfg.engine):
        judge = judge.model_copy(update={"model": model_dir(judge.model, cfg, "judge.model")})
    return cfg.model_copy(update={
        "model": cfg.model.model_copy(update={
            "path": model_dir(cfg.model.path, cfg, "model.path")}),
        "data": cfg.data.model_copy(update={"prompts": absolute_source(cfg.data.prompts)}),
        "storage": cfg.storage.model_copy(update={"run_dir": absolute(cfg.storage.run_dir)}),
        "judge": judge,
    })


def eval_paths(cfg: Config) -> Config:
    """The eval section's models resolved as `absolute_paths` resolves the run's:
    eval.reference, and eval.judge.model where a pool of ours runs it."""
    ev, update = cfg.eval, {}
    if ev.reference:
        update["reference"] = model_dir(ev.reference, cfg, "eval.reference")
    judge = ev.judge
    if judge.kind == "llm" and judge.model and not served_elsewhere(judge.engine or cfg.engine):
        update["judge"] = judge.model_copy(update={
            "model": model_dir(judge.model, cfg, "eval.judge.model")})
    return cfg.model_copy(update={"eval": ev.model_copy(update=update)})
