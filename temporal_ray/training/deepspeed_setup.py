"""Building the model and its DeepSpeed engine inside one Ray Train worker.

In:  a Hugging Face model directory and a `TrainingConfig` (ZeRO stage, offload, precision,
     gradient checkpointing, LoRA).
Out: a DeepSpeed engine whose module is the policy (a peft model with LoRA), ready to train.
Knows nothing of pairs, losses or Ray. Imports deepspeed, transformers and peft lazily.

ZeRO-3 pitfalls handled here:
- the model is built under `deepspeed.zero.Init` (through `HfDeepSpeedConfig`), so a 70B model is
  never whole on one rank;
- LoRA adapters keep the base model's dtype: peft would upcast them to fp32, and ZeRO-3 then
  meets a bf16 base and fp32 adapters in one flat partition;
- gradient checkpointing uses non-reentrant checkpoints; with LoRA the embeddings are frozen, so
  the inputs are also marked as requiring grad, which reentrant checkpoints would need.
- DeepSpeed hooks every module and gathers each one's weights on its own; with
  `zero3_whole_blocks` a transformer block is gathered whole, behind one hook (`mark_blocks`).
"""

from __future__ import annotations

from typing import Any

from temporal_ray.config import TrainingConfig


def deepspeed_config(cfg: TrainingConfig, world_size: int, train: bool = True) -> dict[str, Any]:
    """The DeepSpeed config: batch geometry, ZeRO stage and offload, precision, optimizer."""
    zero: dict[str, Any] = {"stage3_gather_16bit_weights_on_model_save": True,
                            **cfg.zero_options, "stage": cfg.zero_stage}
    if cfg.offload_optimizer and train:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": cfg.use_gpu}
    if cfg.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": cfg.use_gpu}
    config: dict[str, Any] = {
        "train_batch_size": cfg.batch_size,
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": cfg.batch_size // (cfg.micro_batch_size * world_size),
        "gradient_clipping": cfg.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": cfg.use_gpu},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if train and (cfg.use_gpu or cfg.offload_optimizer):
        # DeepSpeed's own AdamW: fused on GPU, its CPU Adam when the optimizer is offloaded.
        # Otherwise (CPU, no offload) the worker passes torch's AdamW as a client optimizer.
        config["optimizer"] = {"type": "AdamW", "params": {"lr": cfg.lr, "weight_decay": 0.0}}
    return config


def load_model(path: str, cfg: TrainingConfig, ds_config: dict[str, Any],
               adapter: str | None = None) -> Any:
    """The policy: the model at `path`, built sharded under ZeRO-3, wrapped in LoRA if asked;
    the LoRA weights start from the local `adapter` directory when one is given (a continued
    adapter), else from peft's initialisation (B = 0: the policy starts as the base). Under
    ZeRO-3 its transformer blocks are marked to be gathered whole (`mark_blocks`)."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.integrations import HfDeepSpeedConfig, unset_hf_deepspeed_config

    # While this object lives, from_pretrained builds the model under deepspeed.zero.Init.
    zero_init = HfDeepSpeedConfig(ds_config) if cfg.zero_stage == 3 else None
    dtype = torch.bfloat16 if cfg.use_gpu else torch.float32
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    if zero_init is not None:
        unset_hf_deepspeed_config()  # later from_pretrained calls (merged export) load whole
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if cfg.lora.enabled:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=cfg.lora.rank, lora_alpha=cfg.lora.alpha,
                          lora_dropout=cfg.lora.dropout,
                          target_modules=list(cfg.lora.target_modules), task_type="CAUSAL_LM")
        model = get_peft_model(model, lora, autocast_adapter_dtype=False)
        if adapter is not None:
            load_adapter_weights(model, adapter)
        if cfg.gradient_checkpointing:
            model.enable_input_require_grads()
    mark_blocks(model, cfg)
    return model


def load_adapter_weights(model: Any, adapter: str) -> None:
    """Copy a saved adapter's weights into the fresh LoRA modules of `model`. Before
    `deepspeed.initialize` the LoRA weights are still whole tensors on every rank (only the
    base was built partitioned), so a plain state-dict load reaches them."""
    import os

    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = load_file(os.path.join(adapter, "adapter_model.safetensors"))
    try:
        result = set_peft_model_state_dict(model, state)
    except RuntimeError as err:  # a shape mismatch: another rank
        raise ValueError(f"{adapter}: does not fit this LoRA config ({err}); dpo.lora.rank "
                         "and target_modules must stay as they were when it was trained") from err
    lora_names = {n for n, p in model.named_parameters() if p.requires_grad}
    if result.unexpected_keys or len(state) != len(lora_names):
        raise ValueError(
            f"{adapter}: its {len(state)} tensors do not match the {len(lora_names)} LoRA "
            f"weights of this config (unexpected: {list(result.unexpected_keys)[:3]}); "
            "dpo.lora.rank and target_modules must stay as they were when it was trained")


def mark_blocks(model: Any, cfg: TrainingConfig) -> list[str]:
    """Under ZeRO-3 with `zero3_whole_blocks`: make the model's transformer blocks (its
    `_no_split_modules`) DeepSpeed leaf modules, gathered whole behind one hook. Returns the
    block class names marked; none for other stages, or a model that names no blocks.

    Why: on every forward and backward DeepSpeed runs fetch and release bookkeeping around
    each module. A Llama block holds about ten modules, so per-block gathering cuts that
    tenfold and sends one larger all-gather instead of ten small ones."""
    if cfg.zero_stage != 3 or not cfg.zero3_whole_blocks:
        return []
    from deepspeed.utils import set_z3_leaf_modules

    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft
    blocks = sorted(getattr(base, "_no_split_modules", None) or [])
    if blocks:
        set_z3_leaf_modules(model, blocks, raise_if_not_found=False)
    return blocks


def build_engine(model: Any, cfg: TrainingConfig, ds_config: dict[str, Any],
                 total_steps: int) -> Any:
    """Wrap the policy in a DeepSpeed engine with AdamW and our warmup + cosine schedule."""
    import deepspeed
    import torch

    from temporal_ray.training.schedule import lr_factor

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = None
    if "optimizer" not in ds_config:
        optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=0.0)
    warmup = int(cfg.warmup_ratio * total_steps)

    def schedule(opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: lr_factor(step, total_steps, warmup, cfg.min_lr / cfg.lr))

    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=schedule,
                                      model_parameters=trainable, config=ds_config)
    return engine


def build_frozen_engine(path: str, cfg: TrainingConfig, world_size: int) -> Any:
    """A second, frozen copy of a model for inference only (the resident DPO reference),
    sharded like the policy but with no optimizer states."""
    import deepspeed

    ds_config = deepspeed_config(cfg, world_size, train=False)
    frozen = cfg.model_copy(update={"lora": cfg.lora.model_copy(update={"enabled": False}),
                                    "gradient_checkpointing": False})
    model = load_model(path, frozen, ds_config).requires_grad_(False)
    engine, *_ = deepspeed.initialize(model=model, config=ds_config)
    engine.eval()
    return engine
