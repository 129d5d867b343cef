"""The typed config: one tree of sections, read from YAML with dotted overrides.

    cfg = load_config("configs/tiny.yaml", ["dpo.beta=0.2", "method.iterations=3"])

Every field has its default and a docstring under it, in the module of its section:

base.py        the `Section` base model, the `Method` names, the `Placement` marker
engine.py      EngineConfig: how generation and judging run
training.py    LoRA, DeepSpeed training, DPO and SFT
evaluation.py  `temporal-ray eval` and its pairwise judge
inputs.py      DataSource: where prompts and SFT examples come from (files, datasets)
tracking.py    TrackingConfig: MLflow, TensorBoard, W&B
experiment.py  the root `Config` and the run's other sections
loading.py     YAML files with `base:`, overrides, `ConfigError`, resume comparisons
resume.py      what a resume may change: `Placement` fields only

An experiment of its own subclasses `Config` with its section and is read with
`load_config(path, overrides, schema=ThatConfig)`.

Pure: imports neither ray nor torch.
"""

from temporal_ray.config.base import Method, Placement, Section
from temporal_ray.config.engine import EngineConfig
from temporal_ray.config.evaluation import EvalConfig, PairwiseJudgeConfig
from temporal_ray.config.experiment import (
    Config,
    DataConfig,
    GenerationConfig,
    JudgeConfig,
    MethodConfig,
    ModelConfig,
    RayConfig,
    StorageConfig,
)
from temporal_ray.config.inputs import DataSource, as_source
from temporal_ray.config.loading import (
    ConfigError,
    apply_override,
    changed_fields,
    load_config,
    with_defaults,
)
from temporal_ray.config.resume import (
    ConfigChange,
    config_changes,
    is_placement,
    results_hash,
)
from temporal_ray.config.tracking import (
    MlflowConfig,
    TensorBoardConfig,
    TrackingConfig,
    WandbConfig,
)
from temporal_ray.config.training import DPOConfig, LoraConfig, SFTConfig, TrainingConfig

__all__ = [
    "Config", "ConfigChange", "ConfigError", "DataConfig", "DataSource", "DPOConfig",
    "EngineConfig", "EvalConfig", "GenerationConfig", "JudgeConfig", "LoraConfig", "Method",
    "MethodConfig", "MlflowConfig", "ModelConfig", "PairwiseJudgeConfig", "Placement", "RayConfig",
    "Section", "SFTConfig", "StorageConfig", "TensorBoardConfig", "TrackingConfig",
    "TrainingConfig", "WandbConfig", "apply_override", "changed_fields", "config_changes",
    "as_source", "is_placement", "load_config", "results_hash", "with_defaults",
]
