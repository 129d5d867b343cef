"""The `tracking` section: where a run's parameters, curves and reports are logged.

Any combination of the three backends may be on; none of them changes what a run computes, so
the section is left out of the config a resume compares (like `eval`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

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
    """Log to Weights & Biases: not built yet, so turning it on is refused."""
    project: str = "temporal-ray"
    entity: str | None = None
    mode: Literal["auto", "online", "offline"] = "auto"
    """`auto`: online with WANDB_API_KEY set, else offline (WANDB_MODE=offline forces it)."""

    @model_validator(mode="after")
    def _not_built_yet(self) -> WandbConfig:
        if self.enabled:
            raise ValueError("tracking.wandb is not built yet: log to MLflow "
                             "(tracking.mlflow.enabled, on by default) or TensorBoard "
                             "(tracking.tensorboard.enabled=true)")
        return self


class TrackingConfig(Section):
    mlflow: MlflowConfig = MlflowConfig()
    tensorboard: TensorBoardConfig = TensorBoardConfig()
    wandb: WandbConfig = WandbConfig()
