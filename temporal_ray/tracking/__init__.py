"""Experiment tracking: a run's config, stages, training curves and reports, logged to MLflow
(and, by config, TensorBoard). A floor above storage and config, below everything that runs:
any command can log, and nothing here knows what a stage computes.

names.py         what is logged under which name (pure: config, manifest, history -> points)
tracker.py       Tracker: one tracked run on every enabled backend; stages as nested runs
mlflow_store.py  MLflow: runs found again in the store, nothing logged twice
"""

from temporal_ray.tracking.tracker import Tracker

__all__ = ["Tracker"]
