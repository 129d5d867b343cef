"""`temporal-ray serve CHECKPOINT`: an OpenAI-compatible endpoint for any checkpoint of a run.

- `--engine vllm`: Ray Serve LLM, `LLMConfig` + `build_openai_app`, with the tensor-parallel
  size and replica range given, on GPUs when the cluster has any (the gpu extra's vLLM), else
  on CPUs (vLLM's CPU build), with the device's settings of the vLLM pools (`--device` picks).
- CPU (`--engine hf`, the default): serve_cpu.py, a Ray Serve deployment over the same HF
  engine the generation pools use, with the same routes, concurrent requests batched into one
  engine call, so a laptop can talk to a run's model with any OpenAI client.

`--api-key-env NAME` (hf): requests must carry `Authorization: Bearer <key>`, the key read from
the environment variable NAME at start. Ray Serve LLM's `build_openai_app` (2.60) has no
API-key setting, so with `--engine vllm` the option is refused, never ignored.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from temporal_ray.config import EngineConfig


class ApiKeyError(RuntimeError):
    """`--api-key-env` that cannot be honoured; the message says what to do."""


def read_api_key(env_name: str, engine: str) -> str:
    """The API key from the environment variable `env_name`."""
    if engine != "hf":
        raise ApiKeyError(
            f"--api-key-env is not supported with --engine {engine}: Ray Serve LLM's "
            "build_openai_app has no API-key setting. Use --engine hf, or put the vLLM "
            "endpoint behind a proxy that checks the key")
    key = os.environ.get(env_name, "").strip()
    if not key:
        raise ApiKeyError(f"--api-key-env {env_name}: the environment variable {env_name} is "
                          "unset or empty; export the key in it, then start again")
    return key


def cluster_device() -> str:
    """`gpu` when the running cluster has any GPU, else `cpu`."""
    import ray

    return "gpu" if ray.cluster_resources().get("GPU", 0) > 0 else "cpu"


def serve_engine(device: str, tensor_parallel_size: int = 1, min_replicas: int = 1,
                 max_replicas: int = 1) -> EngineConfig:
    """The engine settings of the vLLM app: GPU workers on `device` `gpu`, else vLLM's CPU
    build with its settings (engines/vllm.py chooses them by device, as for the pools)."""
    from temporal_ray.config import EngineConfig

    return EngineConfig(kind="vllm", tensor_parallel_size=tensor_parallel_size,
                        actors=min_replicas, gpus_per_actor=1 if device == "gpu" else 0,
                        max_actors=max_replicas if max_replicas > min_replicas else None)


def build_vllm_app(checkpoint: str, served_model: str, engine: EngineConfig):
    """Ray Serve LLM's OpenAI app over vLLM, with the engine arguments every vLLM path
    takes (engines/vllm.py)."""
    from ray.serve.llm import LLMConfig, build_openai_app

    from temporal_ray.engines.vllm import serve_llm_config

    config = LLMConfig(**serve_llm_config(checkpoint, engine, served_model))
    return build_openai_app({"llm_configs": [config]})


def serve_checkpoint(checkpoint: str, name: str | None = None, engine: str = "hf",
                     host: str = "127.0.0.1", port: int = 8000, tensor_parallel_size: int = 1,
                     blocking: bool = True, device: str = "auto",
                     api_key_env: str | None = None,
                     cpu_options: dict[str, Any] | None = None) -> str:
    """Start Serve with the checkpoint's app; returns the base URL (…/v1). `device` (vllm):
    `gpu`, `cpu`, or `auto`: GPUs when the cluster has any. `cpu_options` (hf): keyword
    arguments of serve_cpu.build_cpu_app (max_batch_size, batch_wait_timeout_s, num_cpus,
    torch_threads)."""
    import ray
    from ray import serve

    from temporal_ray.engines.preflight import check_model
    from temporal_ray.serve_cpu import build_cpu_app, key_digest
    from temporal_ray.storage.hub import hub_id, resolve_model

    # The key first: a server that cannot be protected never starts.
    digest = key_digest(read_api_key(api_key_env, engine)) if api_key_env else None
    # A Hub id is served by its name (not its snapshot's commit), from the hub client's cache.
    found = hub_id(checkpoint)
    served_model = name or (found[0] if found else checkpoint).rstrip("/").rsplit("/", 1)[-1]
    checkpoint = resolve_model(checkpoint, field="CHECKPOINT")
    check_model(checkpoint, "CHECKPOINT")
    if not ray.is_initialized():
        ray.init()
    serve.start(http_options={"host": host, "port": port})
    if not serve.status().proxies:
        raise RuntimeError(
            "Ray Serve is already running on this cluster without HTTP proxies (another "
            "application started it that way): check `serve status`, then `serve shutdown` "
            "and start this command again")
    if engine == "vllm":
        device = cluster_device() if device == "auto" else device
        logger.info("vLLM on %ss", device.upper())
        app = build_vllm_app(checkpoint, served_model,
                             serve_engine(device, tensor_parallel_size))
    else:
        app = build_cpu_app(checkpoint, served_model, api_key_digest=digest,
                            **(cpu_options or {}))
    url = f"http://{host}:{port}/v1"
    guard = f", API key from ${api_key_env}" if api_key_env else ""
    print(f"serving {checkpoint} as {served_model!r} at {url}{guard}", flush=True)
    serve.run(app, name="temporal-ray", route_prefix="/", blocking=blocking)
    return url
