"""The training sections: LoRA, what every DeepSpeed training stage shares, and the DPO and SFT
stages that build on it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from temporal_ray.config.base import Placement, Section
from temporal_ray.config.inputs import DataSource


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
    # Micro-batches, ZeRO and offload settings and gradient checkpointing change which
    # examples share a forward pass, or how and where sums are split: left result-affecting.
    micro_batch_size: int = Field(1, gt=0)
    """Examples per worker per forward pass; the rest is gradient accumulation."""
    length_buckets: bool = True
    """Put examples of similar length into one micro-batch (little compute spent on padding).
    The buckets are made once per run and only their order is shuffled per epoch, so each
    step sees one length, and with mixed data often one kind of example: turn it off where
    lengths differ by kind and batches must mix them (the miniature's IFT and EFT rows)."""
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
    """Changes results: each rank takes its own share of a step's examples, in micro-batches
    shuffled with a seed of its rank."""
    use_gpu: bool = False
    """GPU: bf16 weights, NCCL, one GPU per worker. CPU: fp32 and gloo."""
    cpus_per_worker: float = Field(1, gt=0)
    """Changes results on CPUs: Ray sets a worker's OMP_NUM_THREADS (torch's threads) from it."""
    resources_per_worker: Placement[dict[str, float]] = {}
    """Extra Ray resources each worker asks for, e.g. a node type's custom resource, so the
    autoscaler adds (and the scheduler picks) nodes of that type for this stage."""
    gpus_per_node: Placement[int] = Field(8, gt=0)
    """GPUs per node; the plan's offloaded CPU memory is per node."""
    gpu_memory_gib: Placement[float] = Field(80, gt=0)
    """Memory of one GPU; `temporal-ray plan` and the pre-run check compare the plan with it."""
    grad_clip: float = Field(1.0, gt=0)
    seed: int = 0
    checkpoint_every: Placement[int] = Field(50, ge=0)
    """Optimizer steps between checkpoints inside a training run (0: none). A restarted worker
    group, or the same command run again, resumes from the latest one."""
    max_failures: Placement[int] = Field(2, ge=0)
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

    data: list[str | DataSource] = []
    """The examples: paths or sources (config/inputs.py) of {prompt, response} rows or chat
    {messages: [system?, user, assistant]}: IFT (instructions) and EFT (judge prompts
    answered with a justification ending in "Score: k"; `temporal-ray prepare-data` builds
    both). The loss covers response tokens only."""
    base_model: str | None = None
    """The model to fine-tune (a Hugging Face directory)."""
    output: str = "runs/sft"
    """The SFT run directory: checked examples in data/, M0 in model/ (set model.path to it)."""
    lr: float = Field(1e-5, gt=0)
    min_lr: float = Field(1e-6, ge=0)
    epochs: int = Field(2, gt=0)
    batch_size: int = Field(16, gt=0)
