"""`temporal-ray serve CHECKPOINT`: an OpenAI-compatible endpoint for any checkpoint of a run.

- `--engine vllm`: Ray Serve LLM, `LLMConfig` + `build_openai_app`, with the tensor-parallel
  size and replica range given, on GPUs when the cluster has any (the gpu extra's vLLM), else
  on CPUs (vLLM's CPU build), with the device's settings of the vLLM pools (`--device` picks).
- CPU (`--engine hf`, the default): a Ray Serve deployment over the same HF engine the
  generation pools use, with the same routes: GET /v1/models, POST /v1/chat/completions
  (messages, temperature, top_p, max_tokens, seed; no streaming, n = 1), so a laptop can talk
  to a run's model with any OpenAI client.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from temporal_ray.engines.openai_chat import RequestError, chat_completion, chat_request_row

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from temporal_ray.config import EngineConfig


def build_cpu_app(checkpoint: str, served_model: str, num_cpus: float = 1):
    """The Serve application over the HF engine (one replica)."""
    import pandas as pd
    from fastapi import Body, FastAPI, HTTPException
    from ray import serve

    api = FastAPI(title=f"temporal-ray: {served_model}")

    @serve.deployment(ray_actor_options={"num_cpus": num_cpus})
    @serve.ingress(api)
    class ChatModel:
        def __init__(self) -> None:
            from temporal_ray.engines.hf import HFEngine

            self.engine = HFEngine(checkpoint)

        @api.get("/v1/models")
        def models(self) -> dict[str, Any]:
            return {"object": "list", "data": [{"id": served_model, "object": "model",
                                                "owned_by": "temporal-ray", "root": checkpoint}]}

        # `Body`: Serve rewrites the method's signature, and a string annotation alone would
        # no longer mark the argument as the JSON body.
        @api.post("/v1/chat/completions")
        def chat(self, body: dict = Body(...)) -> dict[str, Any]:  # noqa: B008
            try:
                row = chat_request_row(body, served_model)
            except RequestError as err:
                raise HTTPException(status_code=400, detail=str(err)) from err
            (output,) = self.engine(pd.DataFrame([row])).to_dict("records")
            return chat_completion(output, served_model)

    return ChatModel.bind()


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
                     blocking: bool = True, device: str = "auto") -> str:
    """Start Serve with the checkpoint's app; returns the base URL (…/v1). `device` (vllm):
    `gpu`, `cpu`, or `auto`: GPUs when the cluster has any."""
    import ray
    from ray import serve

    from temporal_ray.engines.preflight import check_model
    from temporal_ray.run.session import absolute

    checkpoint = absolute(checkpoint)
    check_model(checkpoint)
    served_model = name or checkpoint.rstrip("/").rsplit("/", 1)[-1]
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
        app = build_cpu_app(checkpoint, served_model)
    url = f"http://{host}:{port}/v1"
    print(f"serving {checkpoint} as {served_model!r} at {url}", flush=True)
    serve.run(app, name="temporal-ray", route_prefix="/", blocking=blocking)
    return url
