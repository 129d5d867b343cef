"""`Tracker`: one tracked run on every enabled backend (mlflow_store, tensorboard_store,
wandb_store), and what the run logs into it.

    tracker = Tracker.open(cfg, run_dir, name="temporal", tags={"method": "temporal"})
    tracker.log_stage("iter_0/model", manifest, stage_path)   # a nested run, DPO steps too
    tracker.log_metrics("collapse", {"mean_gap": 0.4}, step=0)
    tracker.log_artifact("runs/x/report.png"); tracker.finish()

A tracker with no backend (every backend off) logs nothing, so callers need no `if`.
The curves come from what rank 0 wrote: a training stage's metrics.json `history`, read once
the stage has finished, so a step is logged exactly once however often the driver resumes,
and whatever storage the run directory is on. Each run also gets a run-wide curve per kind
(dpo/loss over every DPO stage in order: global steps).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from typing import Any, Protocol

from temporal_ray.config import Config, ConfigError
from temporal_ray.storage.files import resolve
from temporal_ray.storage.run_dir import RunDir
from temporal_ray.tracking.names import (
    TRAINING_KINDS,
    config_params,
    split_record,
    stage_tags,
    step_points,
)

logger = logging.getLogger(__name__)

FINISHED_AT_TAG = "temporal_ray.finished_at"
"""A stage's manifest time: a stage redone since it was logged has another one."""


class TrackedRun(Protocol):
    """What a backend's run does (mlflow_store.MlflowRun)."""

    done: bool
    tags: dict[str, str]

    def child(self, key: str, name: str, tags: dict[str, str]) -> TrackedRun: ...
    def discard_child(self, key: str) -> None: ...
    def reopen(self) -> None: ...
    def log_tags(self, tags: dict[str, str]) -> None: ...
    def log_params(self, params: dict[str, str]) -> None: ...
    def log_points(self, points: list[tuple[str, float, int]]) -> None: ...
    def log_dict(self, data: dict[str, Any], name: str) -> None: ...
    def log_artifact(self, path: str) -> None: ...
    def finish(self) -> None: ...


class Tracker:
    """One tracked run (an experiment, a method's run) on each enabled backend."""

    def __init__(self, runs: list[TrackedRun], method: str | None = None):
        self.runs = runs
        self.method = method
        self.global_steps = dict.fromkeys(TRAINING_KINDS, 0)
        """Steps of each kind logged so far by this run's stages, in the order they ran."""

    @classmethod
    def off(cls) -> Tracker:
        return cls([])

    @classmethod
    def open(cls, cfg: Config, run: RunDir, name: str, tags: dict[str, str] | None = None,
             method: str | None = None, store: RunDir | None = None) -> Tracker:
        """The root run of `run` on every backend `cfg.tracking` enables, with the config
        as parameters. The backends' files (mlruns/, tensorboard/, wandb/) are in `store`, by
        default `run` itself: an evaluation output keeps its run ids but logs into the
        training run's store, so one `mlflow ui` shows both."""
        tags = {**(tags or {}), "run_dir": run.uri}
        store = store or run
        wandb = _wandb_root(cfg, run, name, tags, store)  # first: it may refuse (no API key)
        runs = [*_mlflow_root(cfg, run, name, tags, store),
                *_tensorboard_root(cfg, name, tags, store), *wandb]
        tracker = cls(runs, method)
        tracker.log_config(cfg)
        return tracker

    def child(self, key: str, tags: dict[str, str] | None = None,
              method: str | None = None) -> Tracker:
        """A nested tracked run (a method's run inside an experiment), reopened if done."""
        children = []
        for run in self.runs:
            child = run.child(key, key, tags or {})
            child.reopen()
            children.append(child)
        return Tracker(children, method or self.method)

    def log_config(self, cfg: Config) -> None:
        for run in self.runs:
            run.log_params(config_params(cfg.model_dump(mode="json")))

    def log_stage(self, key: str, manifest: dict[str, Any], path: str) -> None:
        """A finished stage as a nested run: its manifest (numbers as metrics, the rest as
        parameters, the whole as manifest.json) and, for a training stage, its steps."""
        kind = manifest.get("kind")
        history = read_history(path) if kind in TRAINING_KINDS else []
        offset = self.global_steps.get(kind, 0)
        if history:
            self.global_steps[kind] = offset + len(history)
        finished_at = str(manifest.get("finished_at"))
        for run in self.runs:
            stage = run.child(key, key, stage_tags(key, kind, self.method))
            if stage.tags.get(FINISHED_AT_TAG, finished_at) != finished_at:
                run.discard_child(key)  # redone since: a new run replaces it
                stage = run.child(key, key, stage_tags(key, kind, self.method))
            if stage.done:
                continue
            stage.log_tags({FINISHED_AT_TAG: finished_at})
            numbers, labels = split_record(manifest)
            stage.log_params(labels)
            stage.log_points([(name, value, 0) for name, value in numbers.items()])
            if history:
                stage.log_points(step_points(kind, history))
                run.log_points(step_points(kind, history, offset))
            stage.log_dict(manifest, "manifest.json")
            stage.finish()

    def log_metrics(self, prefix: str, values: dict[str, Any], step: int) -> None:
        """The numbers of `values` (nested dicts flattened) as `prefix/name` at `step`."""
        numbers, _ = split_record(values)
        points = [(f"{prefix}/{name}", value, step) for name, value in numbers.items()]
        for run in self.runs:
            run.log_points(points)

    def log_artifact(self, path: str) -> None:
        for run in self.runs:
            run.log_artifact(path)

    def finish(self) -> None:
        for run in self.runs:
            run.finish()


def _mlflow_root(cfg: Config, run: RunDir, name: str, tags: dict[str, str],
                 store: RunDir) -> list[TrackedRun]:
    from temporal_ray.tracking.mlflow_store import MlflowRun, store_uri

    mlflow = cfg.tracking.mlflow
    if not mlflow.enabled:
        return []
    uri = store_uri(mlflow.uri, store)
    if uri is None:
        logger.warning("tracking.mlflow: %s is not local and tracking.mlflow.uri is not set: "
                       "MLflow logs nothing", store.uri)
        return []
    experiment = mlflow.experiment or store.root.rstrip("/").rsplit("/", 1)[-1]
    return [MlflowRun.open_root(uri, experiment, run, name, tags)]


def _tensorboard_root(cfg: Config, name: str, tags: dict[str, str],
                      store: RunDir) -> list[TrackedRun]:
    from temporal_ray.tracking.tensorboard_store import TensorBoardRun

    tensorboard = cfg.tracking.tensorboard
    if not tensorboard.enabled:
        return []
    if tensorboard.log_dir is None and not store.is_local():
        logger.warning("tracking.tensorboard: %s is not local and tracking.tensorboard.log_dir "
                       "is not set: TensorBoard logs nothing", store.uri)
        return []
    root = TensorBoardRun(f"{tensorboard.log_dir or store.path('tensorboard')}/{name}")
    root.reopen()
    root.log_tags(tags)
    return [root]


def _wandb_root(cfg: Config, run: RunDir, name: str, tags: dict[str, str],
                store: RunDir) -> list[TrackedRun]:
    wandb = cfg.tracking.wandb
    if not wandb.enabled:
        return []
    from temporal_ray.tracking.wandb_store import WandbRun, files_dir, resolve_mode

    mode = resolve_mode(wandb.mode, os.environ)
    if mode == "disabled":
        logger.warning("tracking.wandb: WANDB_MODE=disabled: W&B logs nothing")
        return []
    if importlib.util.find_spec("wandb") is None:
        raise ConfigError("tracking.wandb.enabled needs the wandb package: pip install "
                          "'temporal-ray[wandb]' (on a Ray cluster, add wandb to the runtime "
                          "env's pip list)")
    group = store.root.rstrip("/").rsplit("/", 1)[-1]  # as MLflow's default experiment
    return [WandbRun.open_root(run, name, tags, project=wandb.project, entity=wandb.entity,
                               group=group, mode=mode, directory=files_dir(store, os.environ))]


def read_history(stage_path: str) -> list[dict[str, Any]]:
    """The per-step history in a training stage's metrics.json (rank 0 wrote it)."""
    fs, path = resolve(f"{stage_path}/metrics.json")
    try:
        with fs.open_input_stream(path) as f:
            return json.loads(f.read()).get("history") or []
    except FileNotFoundError:
        return []
