"""Writing a trained model out of its ZeRO shards, as a Hugging Face directory.

In:  the DeepSpeed engine after training (every rank calls `save_trained`), the tokenizer, and
     the directory the model was started from.
Out: in `output_dir`, a consolidated safetensors checkpoint with config and tokenizer. With LoRA
     also `adapter/` (peft's adapter_config.json + adapter_model.safetensors, loadable with
     `PeftModel.from_pretrained`); the top level then holds the merged model, so the next stage
     (generation, the next iteration) loads it like any other checkpoint. The adapter's
     `base_model_name_or_path` names the model it applies to (`adapter_of` reads it back).
Every rank joins the gather; only rank 0 writes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from temporal_ray.storage.checkpoints import ADAPTER_DIR


def gather_state_dict(engine: Any, zero_stage: int, trainable_only: bool) -> dict[str, Any]:
    """The full (or, with LoRA, the adapter's) 16-bit state dict, gathered on rank 0.
    A collective: every rank must call it."""
    if zero_stage == 3:
        return engine._zero3_consolidated_16bit_state_dict(
            exclude_frozen_parameters=trainable_only)
    state = engine.module.state_dict()
    if trainable_only:
        keep = {name for name, p in engine.module.named_parameters() if p.requires_grad}
        state = {k: v for k, v in state.items() if k in keep}
    return state


def save_trained(engine: Any, tokenizer: Any, output_dir: str, base_model: str,
                 zero_stage: int, lora: bool, rank: int, base_uri: str | None = None,
                 after_weights: Callable[[], None] | None = None) -> None:
    """Gather and write the trained model; see the module docstring for the layout.
    With LoRA, `base_model` is the local directory the adapter applies to, and `base_uri`
    where it lives for the readers of this checkpoint (default: `base_model`).
    `after_weights` is called on rank 0 once the weights are written, before the tokenizer
    (a test hook: a crash mid-export)."""
    state = gather_state_dict(engine, zero_stage, trainable_only=lora)
    if rank != 0:
        return
    os.makedirs(output_dir, exist_ok=True)
    if not lora:
        engine.module.save_pretrained(output_dir, state_dict=state, safe_serialization=True)
    else:
        adapter_dir = os.path.join(output_dir, ADAPTER_DIR)
        for peft_config in engine.module.peft_config.values():
            peft_config.base_model_name_or_path = base_uri or base_model
        engine.module.save_pretrained(adapter_dir, state_dict=state, safe_serialization=True)
        merge_adapter(base_model, adapter_dir, output_dir)
    if after_weights is not None:
        after_weights()
    tokenizer.save_pretrained(output_dir)


def merge_adapter(base_model: str, adapter_dir: str, output_dir: str) -> None:
    """Base + adapter -> one plain model directory (peft's merge_and_unload), built on CPU.
    Holds the whole base in host memory once: ~140 GB for a 70B model in bf16."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.bfloat16
                                                if _is_bf16(adapter_dir) else torch.float32)
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    merged.save_pretrained(output_dir, safe_serialization=True)


def _is_bf16(adapter_dir: str) -> bool:
    from safetensors import safe_open

    with safe_open(os.path.join(adapter_dir, "adapter_model.safetensors"), "pt") as f:
        first = next(iter(f.keys()), None)
        return first is not None and str(f.get_slice(first).get_dtype()) == "BF16"
