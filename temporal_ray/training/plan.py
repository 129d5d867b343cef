"""Per-GPU memory plan for DeepSpeed ZeRO training of a Llama-style causal LM.

In: an `Architecture` (HF config numbers) and the run geometry (GPUs, ZeRO stage, offload, batch,
length, checkpointing, LoRA). Out: a `MemoryPlan` whose lines say how many GiB (2**30 bytes)
each consumer takes per GPU and where the number comes from. Pure: no Ray, no GPU, no model
weights; DeepSpeed is imported only for its own model-state estimators.

Activations follow Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large
Transformer Models"): one transformer layer keeps about 34*s*b*h bytes in 16-bit (s tokens,
b sequences, h hidden), i.e. 34 bytes per token per hidden unit. Their 5*a*s^2*b attention-score
term is left out because flash/SDPA attention never materialises the s*s scores.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from temporal_ray.config import Config

logger = logging.getLogger(__name__)

GIB = 2**30
CUDA_RESERVE_GIB = 2.0  # CUDA context, NCCL buffers, allocator fragmentation
ACTIVATION_BYTES_PER_TOKEN_HIDDEN = 34  # Korthikanti et al. 2022, without the s^2 term
LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Architecture:
    """The shape of a Llama-style decoder (Llama, Mistral, Qwen2): what memory depends on."""

    name: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    tie_embeddings: bool
    attention_bias: bool = False  # q/k/v biases, as in Qwen2
    head_dim: int | None = None  # None: hidden_size // num_heads

    @classmethod
    def from_hf_config(cls, config: dict, name: str) -> Architecture:
        if "hidden_size" not in config and isinstance(config.get("text_config"), dict):
            config = config["text_config"]  # multimodal wrappers nest the decoder's config
        try:
            heads = config["num_attention_heads"]
            return cls(
                name=name, vocab_size=config["vocab_size"], hidden_size=config["hidden_size"],
                intermediate_size=config["intermediate_size"],
                num_layers=config["num_hidden_layers"], num_heads=heads,
                num_kv_heads=config.get("num_key_value_heads") or heads,
                # Llama/Mistral/Qwen2 configs default to untied; the HF base class would say tied.
                tie_embeddings=bool(config.get("tie_word_embeddings", False)),
                # Qwen2 hard-codes q/k/v biases and has no attention_bias key.
                attention_bias=bool(config.get("attention_bias",
                                               config.get("model_type") == "qwen2")),
                head_dim=config.get("head_dim"))
        except KeyError as missing:
            raise ValueError(f"config of {name} lacks {missing}: not a Llama-style "
                             "decoder config.json") from None

    @property
    def _head_dim(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads

    def _module_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each per-layer linear, by its HF module name."""
        h, i, d = self.hidden_size, self.intermediate_size, self._head_dim
        q, kv = self.num_heads * d, self.num_kv_heads * d
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def _module_params(self) -> dict[str, int]:
        params = {m: a * b for m, (a, b) in self._module_shapes().items()}
        if self.attention_bias:
            for m in ("q_proj", "k_proj", "v_proj"):
                params[m] += self._module_shapes()[m][1]
        return params

    @property
    def block_params(self) -> int:
        """One transformer block: its seven linears and two RMSNorms."""
        return sum(self._module_params().values()) + 2 * self.hidden_size

    @property
    def total_params(self) -> int:
        embed = self.vocab_size * self.hidden_size
        head = 0 if self.tie_embeddings else embed
        return embed + self.num_layers * self.block_params + self.hidden_size + head

    def training_flops_per_token(self, seq_len: int) -> float:
        """Model FLOPs of one training token (forward + backward) at sequence length seq_len:
        6 per weight of every matrix multiply (the layers' linears and the output head; the
        embedding lookup is none) plus PaLM's attention term 12 * layers * heads * head_dim *
        seq_len (Chowdhery et al. 2022, appendix B). What model FLOPs utilisation counts."""
        matmul = self.num_layers * sum(a * b for a, b in self._module_shapes().values())
        matmul += self.vocab_size * self.hidden_size  # the output head (tied or not)
        attention = 12 * self.num_layers * self.num_heads * self._head_dim * seq_len
        return 6.0 * matmul + attention

    @property
    def largest_layer_params(self) -> int:
        # DeepSpeed's model_to_params: max over modules of their own (non-recursive) params.
        return max(self.vocab_size * self.hidden_size, *self._module_params().values())

    def largest_gather_params(self, whole_blocks: bool) -> int:
        """The most parameters ZeRO-3 gathers at once: the largest module, or with whole
        blocks gathered (`zero3_whole_blocks`) the larger of a block and the embedding."""
        if whole_blocks:
            return max(self.vocab_size * self.hidden_size, self.block_params)
        return self.largest_layer_params

    def lora_params(self, rank: int, target_modules: list[str]) -> int:
        shapes = self._module_shapes()
        unknown = sorted(set(target_modules) - set(shapes))
        if unknown:
            raise ValueError(f"unknown LoRA target modules {unknown}; known: {list(shapes)}")
        # A is (rank x in), B is (out x rank); the same adapters sit in every layer.
        per_layer = sum(rank * (shapes[m][0] + shapes[m][1]) for m in set(target_modules))
        return self.num_layers * per_layer


def bundled_architectures() -> dict[str, dict]:
    """Bundled HF config numbers by name (the file stem, e.g. llama-3.1-70b)."""
    folder = resources.files("temporal_ray") / "assets" / "architectures"
    return {f.name.removesuffix(".json"): json.loads(f.read_text(encoding="utf-8"))
            for f in folder.iterdir() if f.name.endswith(".json")}


def load_architecture(model_path: str) -> Architecture:
    """From `model_path/config.json` if that exists, else a bundled file matched by name."""
    local = Path(model_path) / "config.json"
    if "://" not in model_path and local.is_file():
        config = json.loads(local.read_text(encoding="utf-8"))
        return Architecture.from_hf_config(config, Path(model_path).name)
    bundled = bundled_architectures()
    # The nearest path component that names a bundled model wins ("/mnt/runs/llama-3.1-70b-sft/
    # model" is a Llama-3.1-70B); among names, the longest prefix, so -70b never falls to -7b.
    parts = [p.lower() for p in model_path.rstrip("/").split("/") if p]
    key = parts[-1] if parts else model_path
    matches = []
    for part in reversed(parts):
        matches = sorted((n for n in bundled if part.startswith(n)), key=len, reverse=True)
        if matches:
            break
    if not matches:
        raise ValueError(f"no architecture for model path {model_path!r}: no config.json there "
                         f"and {key!r} matches none of the bundled {sorted(bundled)}; point "
                         "model.path at a directory holding config.json")
    return Architecture.from_hf_config(bundled[matches[0]], matches[0])


@dataclass(frozen=True)
class MemoryLine:
    what: str
    gib_per_gpu: float
    source: str


@dataclass(frozen=True)
class MemoryPlan:
    lines: list[MemoryLine]
    gpu_memory_gib: float
    cpu_gib_per_node: float

    @property
    def total_gib(self) -> float:
        return sum(line.gib_per_gpu for line in self.lines)

    @property
    def fits(self) -> bool:
        return self.total_gib <= self.gpu_memory_gib

    def table(self) -> str:
        w = max(len("total"), *(len(line.what) for line in self.lines))
        body = [f"{x.what:<{w}}  {x.gib_per_gpu:>11.2f}  {x.source}" for x in self.lines]
        rows = [f"{'what':<{w}}  {'GiB per GPU':>11}  source", "-" * max(map(len, body)), *body]
        rows.append(f"{'total':<{w}}  {self.total_gib:>11.2f}")
        margin = self.gpu_memory_gib - self.total_gib
        verdict = (f"fits ({margin:.2f} GiB spare)" if self.fits
                   else f"DOES NOT FIT (over by {-margin:.2f} GiB)")
        rows.append(f"budget: {self.gpu_memory_gib:.2f} GiB per GPU -> {verdict}")
        if self.cpu_gib_per_node:
            rows.append(f"CPU per node for offloaded states: {self.cpu_gib_per_node:.2f} GiB")
        return "\n".join(rows)


def _model_state_lines(arch: Architecture, stage: int, gpus_per_node: int, nodes: int,
                       offload_optimizer: bool, offload_params: bool, largest_gather: int
                       ) -> tuple[list[MemoryLine], float]:
    """Full fine-tune weights, grads and Adam states per GPU, and the CPU GiB per node."""
    p, world = arch.total_params, gpus_per_node * nodes
    if stage == 3:
        from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

        # cpu_offload is DeepSpeed's offload_optimizer, cpu_offload_params its offload_param.
        # zero_init=True: the DPO worker builds the model under HfDeepSpeedConfig (zero.Init).
        # DeepSpeed only models param offload together with optimizer offload; param offload
        # alone falls to its no-offload figure, an upper bound by 2 bytes/param/GPU.
        cpu, gpu, _ = estimate_zero3_model_states_mem_needs(
            p, largest_gather, num_gpus_per_node=gpus_per_node, num_nodes=nodes,
            cpu_offload=offload_optimizer, cpu_offload_params=offload_params, zero_init=True)
        where = ("params+optimizer on CPU" if offload_optimizer and offload_params
                 else "optimizer on CPU" if offload_optimizer else "no offload")
        line = MemoryLine(f"model states (ZeRO-3, {where})", gpu / GIB,
                          "DeepSpeed estimate_zero3_model_states_mem_needs")
        return [line], cpu / GIB if offload_optimizer else 0.0
    if offload_params:
        raise ValueError("offload_params needs ZeRO stage 3 (DeepSpeed offload_param)")
    if stage == 0:
        if offload_optimizer:
            raise ValueError("offload_optimizer needs ZeRO stage 1, 2 or 3")
        # DeepSpeed's per-param breakdown, unsharded: 2 bf16 weight + 2 bf16 grad
        # + 4 fp32 grad + 4 fp32 master + 8 Adam moments.
        return [MemoryLine("model states (no ZeRO, 20 B/param)", 20 * p / GIB, "formula")], 0.0
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    cpu, gpu = estimate_zero2_model_states_mem_needs(
        p, num_gpus_per_node=gpus_per_node, num_nodes=nodes, cpu_offload=offload_optimizer)
    where = "optimizer on CPU" if offload_optimizer else "no offload"
    lines = [MemoryLine(f"model states (ZeRO-2, {where})", gpu / GIB,
                        "DeepSpeed estimate_zero2_model_states_mem_needs")]
    if stage == 1:  # ZeRO-1 keeps every rank's bf16 gradients whole; the estimator shards them
        lines.append(MemoryLine("ZeRO-1 unsharded bf16 grads", 2 * p * (world - 1) / world / GIB,
                                "formula"))
    return lines, cpu / GIB if offload_optimizer else 0.0


def _lora_lines(arch: Architecture, stage: int, world: int, nodes: int, offload_optimizer: bool,
                offload_params: bool, adapter: int, largest_gather: int
                ) -> tuple[list[MemoryLine], float]:
    """Frozen bf16 base + adapter states (+ the ZeRO-3 gather buffer) per GPU; CPU per node."""
    if offload_params and stage != 3:
        raise ValueError("offload_params needs ZeRO stage 3 (DeepSpeed offload_param)")
    if offload_optimizer and stage == 0:
        raise ValueError("offload_optimizer needs ZeRO stage 1, 2 or 3")
    shard = {s: world if stage >= s else 1 for s in (1, 2, 3)}  # what each ZeRO stage splits
    base = 2 * arch.total_params / shard[3]
    cpu = base * world / nodes if offload_params else 0.0
    # bf16 weight (split from stage 3) + bf16 grad (stage 2) + fp32 master and 2 Adam moments
    # (stage 1; on the CPU with optimizer offload).
    optim = 12 * adapter / shard[1]
    states = 2 * adapter / shard[3] + 2 * adapter / shard[2] + (0 if offload_optimizer else optim)
    cpu += optim * world / nodes if offload_optimizer else 0.0
    lines = [MemoryLine("frozen base weights, bf16" + (" (on CPU)" if offload_params else ""),
                        0.0 if offload_params else base / GIB, "formula"),
             MemoryLine(f"LoRA adapter states ({adapter / 1e6:.1f}M params)", states / GIB,
                        "formula")]
    if stage == 3:  # the largest gather, whole in bf16; frozen, so no grad for it
        lines.append(MemoryLine("ZeRO-3 gather of largest layer, bf16",
                                2 * largest_gather / GIB, "formula"))
    return lines, cpu / GIB


def plan_memory(arch: Architecture, *, gpus_per_node: int, nodes: int, zero_stage: int,
                offload_optimizer: bool, offload_params: bool, micro_batch_size: int,
                max_length: int, gradient_checkpointing: bool, lora_rank: int = 0,
                lora_targets: list[str] = (), resident_reference: bool = False,
                sequences_per_forward: int = 2, gpu_memory_gib: float = 80.0,
                zero3_whole_blocks: bool = True) -> MemoryPlan:
    """Per-GPU memory for one training step. DPO runs chosen and rejected in one forward
    (sequences_per_forward=2); SFT passes 1."""
    if zero_stage not in (0, 1, 2, 3):
        raise ValueError(f"zero_stage must be 0, 1, 2 or 3, not {zero_stage}")
    world = gpus_per_node * nodes
    largest_gather = arch.largest_gather_params(zero3_whole_blocks)
    if lora_rank:
        adapter = arch.lora_params(lora_rank, list(lora_targets))
        lines, cpu = _lora_lines(arch, zero_stage, world, nodes, offload_optimizer,
                                 offload_params, adapter, largest_gather)
    else:
        lines, cpu = _model_state_lines(arch, zero_stage, gpus_per_node, nodes,
                                        offload_optimizer, offload_params, largest_gather)
    if resident_reference and not lora_rank:  # LoRA's reference is the base, adapters off
        copy = 2 * arch.total_params / (world if zero_stage == 3 else 1)
        lines.append(MemoryLine("resident reference model, bf16", copy / GIB, "formula"))

    tokens = micro_batch_size * sequences_per_forward * max_length
    layer = ACTIVATION_BYTES_PER_TOKEN_HIDDEN * tokens * arch.hidden_size
    if gradient_checkpointing:  # saved layer inputs, plus one layer recomputed in backward
        act = arch.num_layers * tokens * arch.hidden_size * 2 + layer
        what = f"activations (checkpointed, {tokens} tokens)"
    else:
        act = arch.num_layers * layer
        what = f"activations (all layers, {tokens} tokens)"
    lines.append(MemoryLine(what, act / GIB, "formula (Korthikanti 2022, 34*s*b*h)"))
    # At the loss: bf16 logits, their fp32 copy and the fp32 log-softmax (dpo/loss.py).
    lines.append(MemoryLine("logits, bf16 + fp32 copy + fp32 log-softmax",
                            tokens * arch.vocab_size * 10 / GIB, "formula"))
    lines.append(MemoryLine("CUDA context + allocator reserve", CUDA_RESERVE_GIB, "fixed"))
    return MemoryPlan(lines=lines, gpu_memory_gib=gpu_memory_gib, cpu_gib_per_node=cpu)


class PlanError(RuntimeError):
    """A GPU training stage whose plan does not fit its GPUs."""


def plan_stage(cfg: Config, stage: str = "dpo") -> MemoryPlan:
    """The memory plan of the config's DPO or SFT stage."""
    training = cfg.dpo if stage == "dpo" else cfg.sft
    model = cfg.model.path if stage == "dpo" else (cfg.sft.base_model or "")
    gpus_per_node = min(training.gpus_per_node, training.workers)
    return plan_memory(
        load_architecture(model), gpus_per_node=gpus_per_node,
        nodes=-(-training.workers // gpus_per_node), zero_stage=training.zero_stage,
        offload_optimizer=training.offload_optimizer, offload_params=training.offload_params,
        micro_batch_size=training.micro_batch_size, max_length=training.max_length,
        gradient_checkpointing=training.gradient_checkpointing,
        lora_rank=training.lora.rank if training.lora.enabled else 0,
        lora_targets=training.lora.target_modules,
        resident_reference=stage == "dpo" and cfg.dpo.reference == "resident",
        sequences_per_forward=2 if stage == "dpo" else 1,
        gpu_memory_gib=training.gpu_memory_gib, zero3_whole_blocks=training.zero3_whole_blocks)


def check_fits(cfg: Config, stage: str) -> None:
    """Before a GPU job starts: refuse a stage that cannot fit, with the plan as the reason.
    CPU runs are not planned; a model whose architecture cannot be read is let through."""
    if not (cfg.dpo if stage == "dpo" else cfg.sft).use_gpu:
        return
    try:
        plan = plan_stage(cfg, stage)
    except ValueError as err:
        logger.warning("no memory plan for the %s stage: %s", stage, err)
        return
    if not plan.fits:
        raise PlanError(
            f"the {stage} stage does not fit {plan.gpu_memory_gib:g} GiB GPUs:\n{plan.table()}\n"
            f"Turn on {stage}.gradient_checkpointing, {stage}.offload_optimizer or "
            f"{stage}.offload_params, use {stage}.lora, lower {stage}.micro_batch_size or "
            f"{stage}.max_length, or add {stage}.workers.")
