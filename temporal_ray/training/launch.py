"""Launching a training loop on Ray Train workers: sizing, restarts, in-run checkpoints.

In:  a per-worker loop function, its config dict, the `TrainingConfig` that sizes the group,
     and where Ray Train keeps the run's checkpoints (`storage_path`/`name`).
Out: the metrics.json that rank 0 wrote into `output_dir` (Ray Train V2 returns no metrics
     without a reported checkpoint, so the loop writes them beside the model), its `phases`
     (seconds per phase of the run) completed with Ray Train's start and stop.
While the job runs, the driver draws a bar from rank 0's progress record in `output_dir`
(`TrainingProgress`). A worker's error reaches the driver in the exception `fit` raises (with
the worker's traceback), whether or not the workers' output is shown (--verbose).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from temporal_ray.config import TrainingConfig
from temporal_ray.storage.files import resolve
from temporal_ray.storage.progress import read_progress
from temporal_ray.terminal import Progress

logger = logging.getLogger(__name__)


def check_batch_geometry(cfg: TrainingConfig, section: str = "dpo") -> None:
    """Refuse a batch size that the workers and micro-batches cannot split evenly."""
    per_step = cfg.micro_batch_size * cfg.workers
    if cfg.batch_size % per_step:
        raise ValueError(
            f"{section}.batch_size={cfg.batch_size} must be a multiple of "
            f"{section}.micro_batch_size x {section}.workers = "
            f"{cfg.micro_batch_size} x {cfg.workers} = {per_step}")


def worker_resources(cfg: TrainingConfig) -> dict[str, float]:
    """The Ray resources one training worker holds."""
    return {"CPU": cfg.cpus_per_worker, **cfg.resources_per_worker,
            **({"GPU": 1} if cfg.use_gpu else {})}


def job_resources(cfg: TrainingConfig) -> dict[str, float]:
    """The Ray resources a training job's workers hold together (its controller holds none)."""
    return {name: amount * cfg.workers for name, amount in worker_resources(cfg).items()}


def fit_on_workers(loop: Callable[[dict[str, Any]], None], loop_config: dict[str, Any],
                   cfg: TrainingConfig, output_dir: str, storage_path: str,
                   name: str) -> dict[str, Any]:
    """Run `loop` on `cfg.workers` Ray Train workers and return rank 0's metrics.json.

    A run with the same `name` under `storage_path` resumes from its latest checkpoint, so the
    name must change when the inputs do.
    """
    began = time.time()
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    resources = worker_resources(cfg)
    trainer = TorchTrainer(
        train_loop_per_worker=loop,
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=cfg.workers, use_gpu=cfg.use_gpu,
                                     resources_per_worker=resources),
        run_config=RunConfig(
            name=name, storage_path=storage_path,
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            # Only the latest checkpoint is needed to resume; optimizer states are large.
            checkpoint_config=CheckpointConfig(num_to_keep=1)),
    )
    with TrainingProgress(output_dir):
        trainer.fit()
    ended = time.time()
    fs, path = resolve(f"{output_dir}/metrics.json")
    with fs.open_input_stream(path) as f:
        return with_driver_phases(json.loads(f.read()), began, ended)


def with_driver_phases(metrics: dict[str, Any], began: float, ended: float) -> dict[str, Any]:
    """`metrics` with Ray Train's own share of the run's wall time added to the workers'
    `phases`: start_workers (from the call: the trainer, the controller and the worker group
    up, until the last attempt's loop began; failed attempts included) and stop_workers
    (after the export: metrics.json, the last barrier, the group's shutdown)."""
    started = metrics.pop("worker_started", None)
    if started is None or "phases" not in metrics:
        return metrics
    worker = metrics["phases"]
    metrics["phases"] = {"start_workers": round(started - began, 3), **worker,
                         "stop_workers": round(ended - started - sum(worker.values()), 3)}
    return metrics


class TrainingProgress:
    """The driver's bar while it waits on a training job: a thread reads rank 0's progress
    record (storage/progress.py) every `poll_s` and draws it (terminal.Progress, in steps).
    A record of a new attempt means Ray Train restarted the worker group after a failure:
    that is logged as a warning, since the failed worker's own output is shown only with
    --verbose (the error that ends a job is raised by `fit` in any case)."""

    def __init__(self, output_dir: str, poll_s: float = 1.0, mode: str | None = None) -> None:
        self.output_dir, self.poll_s, self.mode = output_dir, poll_s, mode
        self.bar: Progress | None = None
        self.attempt: float | None = None
        """When the attempt whose record was read last began."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="training-progress",
                                        daemon=True)

    def poll(self) -> None:
        """Read the record once and draw it."""
        record = read_progress(self.output_dir)
        if record is None:
            return
        label = f"training ({record.kind})"
        if self.bar is None:
            self.bar = Progress(label, record.total, "steps", initial=record.step,
                                mode=self.mode)
        if self.attempt is not None and record.started != self.attempt:
            logger.warning("%s: Ray Train restarted the workers after a failure; training "
                           "goes on after step %d (the failed worker's output: --verbose, "
                           "or Ray's session logs)", label, record.from_step)
        self.attempt = record.started
        self.bar.advance_to(record.step, record.total)

    def _follow(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll()

    def __enter__(self) -> TrainingProgress:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        if self.bar is not None:
            self.bar.close()
