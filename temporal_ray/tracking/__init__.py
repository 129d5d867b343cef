"""Experiment tracking: a run's config, stages, training curves and reports, logged to MLflow
(and, by config, TensorBoard and Weights & Biases). A floor above storage and config,
below everything that runs: any command can log, and nothing here knows what a stage computes.

names.py              what is logged under which name (pure: config, manifest, history)
tracker.py            Tracker: one tracked run on every enabled backend; stages nested in it
mlflow_store.py       MLflow: runs found again in the store, nothing logged twice
tensorboard_store.py  TensorBoard: a directory of event files per run, read back on resume
wandb_store.py        W&B: one run per experiment, stages as prefixes, a ledger in tracking.json
"""

from temporal_ray.tracking.tracker import Tracker

__all__ = ["Tracker"]
