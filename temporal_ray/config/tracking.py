"""The `tracking` section: where a run's parameters, curves and reports are logged.

Any combination of the three backends may be on; none of them changes what a run computes, so
the section is left out of the config a resume compares (like `eval`).
"""

from __future__ import annotations

from typing import Literal

from temporal_ray.config.base import Section


class MlflowConfig(Section):
    enabled: bool = True
    """Log to MLflow. On by default: a file store inside the run directory, no server
    needed; open it with `mlflow ui --backend-store-uri <storage.run_dir>/mlruns`."""
    uri: str | None = None
    """A tracking URI (`http://host:5000`, `sqlite:///...`, `databricks`); empty means the
    file store <storage.run_dir>/mlruns (a local run directory only: with a remote one,
    MLflow logs nothing unless this is set)."""
    experiment: str | None = None
    """The MLflow experiment; empty means the run directory's name (e.g. `miniature`)."""


class TensorBoardConfig(Section):
    enabled: bool = False
    """Write TensorBoard event files (`tensorboard --logdir <log_dir>`); needs the
    tensorboard package (the `tensorboard` extra; `dev` has it)."""
    log_dir: str | None = None
    """Empty means <storage.run_dir>/tensorboard."""


class WandbConfig(Section):
    enabled: bool = False
    """Log to Weights & Biases: one W&B run per experiment, stages as metric prefixes
    (iter_0/model/dpo/loss); needs the wandb package (the `wandb` extra; `dev` has it)."""
    project: str = "temporal-ray"
    entity: str | None = None
    """The W&B team or user; empty means the API key's default entity."""
    mode: Literal["auto", "online", "offline"] = "auto"
    """`auto`: online with WANDB_API_KEY set, else offline; `online` without WANDB_API_KEY is
    refused when the run starts. WANDB_MODE=offline forces offline. Offline runs are files
    under <storage.run_dir>/wandb (or WANDB_DIR): upload them with `wandb sync`."""


class TrackingConfig(Section):
    mlflow: MlflowConfig = MlflowConfig()
    tensorboard: TensorBoardConfig = TensorBoardConfig()
    wandb: WandbConfig = WandbConfig()
