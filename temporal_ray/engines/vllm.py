"""The `vllm` engine: Ray Data LLM's own vLLM processor (ray.data.llm, Ray 2.60).

Takes the same request rows as the `hf` engine ({messages, sampling_params}) and returns the
same columns (generated_text, num_input_tokens, num_generated_tokens): the processor's chat
template, tokenize, engine and detokenize stages do the work; our columns pass through, except
that Ray's stages write the templated text into a `prompt` column, so the user's prompt is
stashed before and restored after (`stash_prompt`, `restore_prompt`).
On GPUs it needs the `gpu` extra (ray[llm], which brings vllm); on CPUs the CPU build of the
same vLLM (`make install` puts it in). What differs by device (dtype, eager mode, KV-cache
memory, placement bundles) is chosen in one place, `device_engine_kwargs` and `worker_bundle`,
for a stage's processor, a kept pool's engine (vllm_engine.py) and `temporal-ray serve` alike.
"""

from __future__ import annotations

from typing import Any

from temporal_ray.config import EngineConfig

MAX_ADAPTERS = 3
"""Adapters one engine keeps on its GPU at once: past, present and future at most."""
CPU_KV_CACHE_GIB = 1.0
"""KV cache of one CPU engine unless engine.kv_cache_gib says otherwise: vLLM's CPU build
otherwise reserves a share of the node's whole RAM (its default 0.92 is refused on a busy
node)."""


VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The values vLLM 0.29 takes for max_lora_rank (`vllm.config.lora.MaxLoRARanks`)."""


def vllm_lora_rank(rank: int) -> int:
    """The smallest max_lora_rank vLLM takes that holds adapters of `rank`."""
    fits = [allowed for allowed in VLLM_LORA_RANKS if allowed >= rank]
    if not fits:
        raise ValueError(f"dpo.lora.rank {rank} is above {VLLM_LORA_RANKS[-1]}, the largest "
                         "adapter rank vLLM serves")
    return fits[0]


def on_gpu(engine: EngineConfig) -> bool:
    return engine.gpus_per_actor > 0


def device_engine_kwargs(engine: EngineConfig) -> dict[str, Any]:
    """The engine arguments that differ by device, each from its config field when set."""
    gpu = on_gpu(engine)
    kwargs: dict[str, Any] = {
        "dtype": engine.dtype or ("auto" if gpu else "float32"),
        "enforce_eager": (not gpu) if engine.enforce_eager is None else engine.enforce_eager,
    }
    if not gpu:
        # vLLM 0.29's CPU build crashes ("CPU Generator does not use offset") when a seeded
        # request's prefill is split over two steps, as chunked prefill does once a batch's
        # prompts pass max_num_batched_tokens (128 judge prompts of the miniature did).
        kwargs["enable_chunked_prefill"] = False
    kv_cache_gib = engine.kv_cache_gib or (None if gpu else CPU_KV_CACHE_GIB)
    if kv_cache_gib:
        kwargs["kv_cache_memory_bytes"] = int(kv_cache_gib * 2**30)
    if engine.gpu_memory_utilization is not None:
        kwargs["gpu_memory_utilization"] = engine.gpu_memory_utilization
    return kwargs


HELPER_STAGE_CPUS = 0.0
"""CPUs that each of Ray Data LLM's light stages (chat template, tokenize, detokenize) holds on
CPU nodes: none. At Ray's default of one each they and the engine hold four CPUs, and on a
small node (a 2-core machine's local cluster) the stage's own read task then waits for a CPU
forever; they do little work, beside an engine that holds its CPUs."""


def helper_stage_kwargs(engine: EngineConfig) -> dict[str, Any]:
    """The processor's light stages: Ray's defaults on GPU nodes, no CPU held on CPUs."""
    if on_gpu(engine):
        return {}
    light = {"num_cpus": HELPER_STAGE_CPUS}
    return {"chat_template_stage": light, "tokenize_stage": light,
            "detokenize_stage": light}


def worker_bundle(engine: EngineConfig) -> dict[str, float] | None:
    """The placement bundle of one vLLM worker (tensor x pipeline of them per engine), or None
    for Ray's default (one GPU and one CPU). On CPUs it must be given: without it the stage
    asks for a GPU and waits for one forever."""
    if on_gpu(engine):
        return {"GPU": 1, **engine.resources} if engine.resources else None
    return {"CPU": engine.cpus_per_actor, **engine.resources}


def vllm_engine_kwargs(engine: EngineConfig, lora_rank: int | None = None) -> dict[str, Any]:
    """vLLM's engine arguments, the same for a stage's processor, a kept pool's engine and
    the served endpoint."""
    engine_kwargs: dict[str, Any] = {
        "tensor_parallel_size": engine.tensor_parallel_size,
        "pipeline_parallel_size": engine.pipeline_parallel_size,
        # Judge prompts share the long rubric prefix, and a prompt's K samples share it all.
        "enable_prefix_caching": True,
        **device_engine_kwargs(engine),
    }
    if engine.max_model_len:
        engine_kwargs["max_model_len"] = engine.max_model_len
    if lora_rank is not None:
        engine_kwargs.update(enable_lora=True, max_lora_rank=vllm_lora_rank(lora_rank),
                             max_loras=MAX_ADAPTERS)
    return engine_kwargs


def vllm_processor_kwargs(model_path: str, engine: EngineConfig,
                          lora_rank: int | None = None) -> dict[str, Any]:
    """Arguments for `ray.data.llm.vLLMEngineProcessorConfig`. With `lora_rank` the engine
    serves LoRA adapters of `model_path` too, as the rows' `model` column names them."""
    kwargs = {
        "model_source": model_path,
        "engine_kwargs": vllm_engine_kwargs(engine, lora_rank),
        "concurrency": engine.pool_size,
        "batch_size": engine.batch_size,
        **helper_stage_kwargs(engine),
    }
    bundle = worker_bundle(engine)
    if bundle is not None:
        # One bundle per vLLM worker (replicated tensor x pipeline times by Ray), each also
        # asking for the node type's resource.
        kwargs["placement_group_config"] = {"bundle_per_worker": bundle, "strategy": "PACK"}
    return kwargs


STASHED_PROMPT = "source_prompt"


def stash_prompt(row: dict[str, Any]) -> dict[str, Any]:
    """Preprocess: move our `prompt`, if the row has one, out of the way of the column Ray's
    stages write."""
    out = dict(row)
    if "prompt" in out:
        out[STASHED_PROMPT] = out.pop("prompt")
    return out


def restore_prompt(row: dict[str, Any]) -> dict[str, Any]:
    """Postprocess: put the user's prompt back where every stage after generation reads it
    (a row that came without one leaves without Ray's templated text too), and the text as
    every engine writes it (no surrounding white space: vLLM keeps the space that a first
    word-initial token decodes to)."""
    out = dict(row)
    out.pop("prompt", None)
    if STASHED_PROMPT in out:
        out["prompt"] = out.pop(STASHED_PROMPT)
    out["generated_text"] = (out.get("generated_text") or "").strip()
    return out


def build_vllm_processor(model_path: str, engine: EngineConfig, lora_rank: int | None = None):
    """A row's `model` is the adapter's directory: Ray's stage loads it as a LoRARequest
    (the base's own path means no adapter). Adapters on remote storage (a run directory on
    s3:// or gs://) would need the processor's `dynamic_lora_loading_path`; keep the run
    directory on a filesystem the GPU nodes share when serving adapters with vLLM."""
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    config = vLLMEngineProcessorConfig(**vllm_processor_kwargs(model_path, engine, lora_rank))
    return build_processor(config, preprocess=stash_prompt, postprocess=restore_prompt)


def serve_llm_config(model_path: str, engine: EngineConfig, served_model: str) -> dict[str, Any]:
    """Arguments for `ray.serve.llm.LLMConfig` (`temporal-ray serve --engine vllm`): a Ray
    Serve LLM deployment of `model_path`, answering for `served_model`, with `engine.actors`
    replicas (up to `engine.max_actors` when the autoscaler may add more)."""
    config: dict[str, Any] = {
        "model_loading_config": {"model_id": served_model, "model_source": model_path},
        "engine_kwargs": vllm_engine_kwargs(engine),
        "deployment_config": {"autoscaling_config": {
            "min_replicas": engine.actors, "max_replicas": engine.max_actors or engine.actors}},
    }
    bundle = worker_bundle(engine)
    if bundle is not None:
        # One bundle per vLLM worker of a replica, each also asking for the node type's resource.
        config["placement_group_config"] = {
            "bundles": [bundle] * engine.tensor_parallel_size * engine.pipeline_parallel_size,
            "strategy": "PACK"}
    if not on_gpu(engine):
        # The replica's actor only relays requests to its engine, which holds the bundle's
        # CPU; at Ray's default of one more, `serve --engine vllm` with its ingress would
        # need 3 CPUs, more than a 2-core machine has.
        config["deployment_config"]["ray_actor_options"] = {"num_cpus": 0}
    return config
