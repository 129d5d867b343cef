"""The typed config: one tree of sections (sections.py), read from YAML with dotted overrides.

    cfg = load_config("configs/tiny.yaml", ["dpo.beta=0.2", "method.iterations=3"])

Pure: imports neither ray nor torch.
"""

from temporal_ray.config.sections import (
    KEPT_VLLM_POOL_LOADS_NO_ADAPTERS,
    RUN_SECTIONS,
    Config,
    ConfigError,
    DataConfig,
    DPOConfig,
    EngineConfig,
    EvalConfig,
    GenerationConfig,
    JudgeConfig,
    LoraConfig,
    Method,
    MethodConfig,
    MiniatureConfig,
    ModelConfig,
    PairwiseJudgeConfig,
    RayConfig,
    Section,
    SFTConfig,
    StorageConfig,
    TrainingConfig,
    apply_override,
    changed_fields,
    load_config,
    with_defaults,
)

__all__ = [
    "KEPT_VLLM_POOL_LOADS_NO_ADAPTERS", "RUN_SECTIONS", "Config", "ConfigError", "DataConfig",
    "DPOConfig", "EngineConfig", "EvalConfig", "GenerationConfig", "JudgeConfig", "LoraConfig",
    "Method", "MethodConfig", "MiniatureConfig", "ModelConfig", "PairwiseJudgeConfig",
    "RayConfig", "Section", "SFTConfig", "StorageConfig", "TrainingConfig", "apply_override",
    "changed_fields", "load_config", "with_defaults",
]
