"""The `vllm` engine: Ray Data LLM's own vLLM processor (ray.data.llm, Ray 2.60).

Takes the same request rows as the `hf` engine ({messages, sampling_params}) and returns the
same columns (generated_text, num_input_tokens, num_generated_tokens): the processor's chat
template, tokenize, engine and detokenize stages do the work; our columns pass through.
Needs the `gpu` extra (ray[llm], which brings vllm) and a GPU.
"""

from __future__ import annotations

from typing import Any

from temporal_ray.config import EngineConfig


def vllm_processor_kwargs(model_path: str, engine: EngineConfig) -> dict[str, Any]:
    """Arguments for `ray.data.llm.vLLMEngineProcessorConfig`."""
    engine_kwargs: dict[str, Any] = {
        "tensor_parallel_size": engine.tensor_parallel_size,
        # Judge prompts share the long rubric prefix, and a prompt's K samples share it all.
        "enable_prefix_caching": True,
    }
    if engine.max_model_len:
        engine_kwargs["max_model_len"] = engine.max_model_len
    return {
        "model_source": model_path,
        "engine_kwargs": engine_kwargs,
        "concurrency": engine.actors,
        "batch_size": engine.batch_size,
    }


def build_vllm_processor(model_path: str, engine: EngineConfig):
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    config = vLLMEngineProcessorConfig(**vllm_processor_kwargs(model_path, engine))
    return build_processor(config)
