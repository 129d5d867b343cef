"""The root `Config` and the sections of an experiment that have no module of their own: the
model, the prompts, the method, sampling, the judge, Ray and storage.

An experiment of its own subclasses `Config` to add its section; the root's `pools`, `tracking`
and `eval` still end the file, and `run_sections()` names the subclass's sections too.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import yaml
from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from temporal_ray.config.base import Method, Placement, Section
from temporal_ray.config.engine import EngineConfig
from temporal_ray.config.evaluation import EvalConfig
from temporal_ray.config.inputs import DataSource
from temporal_ray.config.tracking import TrackingConfig
from temporal_ray.config.training import DPOConfig, SFTConfig
from temporal_ray.core.roles import Role

# The sections that end a config file, after any section an experiment's subclass adds
# (pydantic puts a subclass's fields last): a file, a dump and a run's config.yaml keep the
# order they had when every section was the root's own.
CLOSING_SECTIONS = ("pools", "tracking", "eval")
# How a run is evaluated and logged: what its stages compute never depends on these.
OBSERVING_SECTIONS = ("tracking", "eval")


class ModelConfig(Section):
    path: str
    """M0: a Hugging Face model directory (the SFT'd starting policy and the fixed past model)."""


class DataConfig(Section):
    prompts: str | DataSource
    """The training prompts: a path (JSONL, JSON, Parquet, a Hugging Face dataset directory or
    Hub name), or a source with its format, split and field names (config/inputs.py). Rows
    are plain ({prompt, optional system and prompt_id}) or chat ({messages: [...]})."""
    prompts_per_iteration: int = Field(64, gt=0)
    """Size of each iteration's prompt chunk; chunks are taken in file order and wrap around."""
    prompt_field: str = "prompt"
    """Name of the field that holds the prompt text, when `prompts` is a plain path."""


class MethodConfig(Section):
    name: Method = Method.TEMPORAL
    """`temporal` (past-future pairs) or `self_rewarding` (the Yuan et al. baseline)."""
    iterations: int = Field(2, gt=0)
    """How many iterations M_i -> M_{i+1} to run."""


class GenerationConfig(Section):
    samples: int = Field(4, gt=0)
    """K: responses sampled per prompt and model (the paper uses 7, Self-Rewarding 4)."""
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(0.9, gt=0, le=1)
    max_new_tokens: int = Field(1024, gt=0)
    seed: int = 0
    """Base seed; each (role, prompt, sample) derives its own seed from it."""
    overlong: Literal["drop", "truncate"] = "drop"
    """A prompt longer than the context minus max_new_tokens: `drop` it, or `truncate` it to
    its last tokens (the question usually ends a prompt). Counted either way."""


class JudgeConfig(Section):
    kind: Literal["llm", "rule"] = "llm"
    """`llm`: the present model judges with the rubric prompt. `rule`: a Python callable."""
    rule: str | None = None
    """For kind `rule`: `module:function` taking (prompt, response) and returning a float."""
    prompt_template: str | None = None
    """For kind `llm`: a file with the judge prompt ({prompt} and {response} placeholders);
    empty means the built-in 5-point additive rubric of Yuan et al."""
    model: str | None = None
    """For kind `llm`: empty means the present model M_i judges (self-rewarding, method.md).
    Otherwise a fixed judge: a model directory run by `engine`, or with an `http` engine the
    id of a model served elsewhere (the paper's robustness check with an external judge)."""
    engine: EngineConfig | None = None
    """The judge's engine; empty means the run's `engine` section."""
    samples: int = Field(3, gt=0)
    """J: judgements sampled per candidate; valid scores are averaged."""
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(0.9, gt=0, le=1)
    max_new_tokens: int = Field(256, gt=0)
    score_pattern: str = r"Score:\s*(\d+(?:\.\d+)?)"
    """Regular expression whose first group is the score; the last match in a judgement wins.
    It reads any number so that "Score: 7" counts as out of range rather than unparsed."""
    min_score: float = 0.0
    max_score: float = 5.0
    overlong: Literal["drop", "truncate"] = "drop"
    """A judge prompt too long for the judge's context: `drop` it (the candidate stays
    unscored), or `truncate` the response the judge is shown to its first tokens, marked
    " [...]". Counted per role either way."""
    min_valid_share: float = Field(0.5, ge=0, le=1)
    """Stop the iteration when fewer than this share of a role's candidates got a valid
    score, rather than train on the handful of pairs the rest would give."""

    @model_validator(mode="after")
    def _rule_needs_callable(self) -> JudgeConfig:
        if self.kind == "rule" and not self.rule:
            raise ValueError("judge.kind is 'rule' but judge.rule (module:function) is not set")
        return self


class RayConfig(Section):
    address: Placement[str | None] = None
    """Cluster to join; empty starts a local cluster (or joins the one `ray job submit` gives)."""
    num_cpus: Placement[int | None] = None
    """Logical CPUs of a local cluster; empty means this machine's cores."""


class StorageConfig(Section):
    run_dir: str = "runs/default"
    """Where every stage writes its output: a local path, a mounted volume or a pyarrow URI."""
    hub_cache: Placement[str | None] = None
    """Where a model named by a Hugging Face Hub id (`org/name` or `org/name@revision` as
    model.path, sft.base_model, judge.model, ...) is downloaded once and read from: a directory
    every node sees, e.g. a shared volume. Empty: the hub client's own cache (HF_HUB_CACHE or
    ~/.cache/huggingface/hub). With HF_HUB_OFFLINE set, models are only looked up there."""


class Config(Section):
    """The whole config of a run; an experiment subclasses it to add a section of its own."""

    model: ModelConfig
    data: DataConfig
    method: MethodConfig = MethodConfig()
    generation: GenerationConfig = GenerationConfig()
    judge: JudgeConfig = JudgeConfig()
    dpo: DPOConfig = DPOConfig()
    sft: SFTConfig = SFTConfig()
    engine: EngineConfig = EngineConfig()
    ray: RayConfig = RayConfig()
    storage: StorageConfig = StorageConfig()
    pools: dict[Role, dict[str, Any]] = {}
    """Per-role changes to `engine` for the generation pools, e.g. `{past: {actors: 2},
    future: {actors: 4, max_actors: 8}}`: a role's pool is `engine` with those fields
    changed. Roles: past (M0), present (M_i), future (M_f). The judge has `judge.engine`."""
    tracking: TrackingConfig = TrackingConfig()
    """Experiment tracking: MLflow (on: a file store in the run directory), TensorBoard, W&B."""
    eval: EvalConfig = EvalConfig()

    def engine_for(self, role: Role) -> EngineConfig:
        """The engine of `role`'s generation pool."""
        changes = self.pools.get(role)
        if not changes:
            return self.engine
        return EngineConfig.model_validate({**self.engine.model_dump(), **changes})

    @model_validator(mode="after")
    def _pools_are_engine_changes(self) -> Config:
        for role in self.pools:
            try:
                self.engine_for(role)
            except ValidationError as err:
                problems = "; ".join(
                    (f"{'.'.join(map(str, e['loc']))}: " if e["loc"] else "")
                    + e["msg"].removeprefix("Value error, ") for e in err.errors())
                raise ValueError(f"pools.{role.value}: {problems}") from None
        return self

    @classmethod
    def section_names(cls) -> tuple[str, ...]:
        """The sections in file order: the root's, a subclass's, then `CLOSING_SECTIONS`."""
        return (*(name for name in cls.model_fields if name not in CLOSING_SECTIONS),
                *CLOSING_SECTIONS)

    def run_sections(self) -> tuple[str, ...]:
        """What a training run's stages depend on: every section but eval and tracking, so
        changing how a run is evaluated or logged never invalidates (or refuses to resume)
        the run itself."""
        return tuple(name for name in self.section_names() if name not in OBSERVING_SECTIONS)

    @model_serializer(mode="wrap")
    def _in_section_order(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        return {name: data[name] for name in self.section_names() if name in data}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def hash(self, *sections: str) -> str:
        """A short stable hash of the named sections (all of them when none is named)."""
        data = self.model_dump(mode="json")
        picked = {name: data[name] for name in (sections or data)}
        return hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()[:16]
