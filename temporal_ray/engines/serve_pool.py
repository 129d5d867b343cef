"""Kept vLLM pools: a Ray Serve application that outlives the stage, called through Ray Data.

A vLLM engine takes minutes to start on a large model (loading the weights, capturing CUDA
graphs), so with `engine.keep_alive` a `vllm` pool is a Ray Serve LLM deployment (`LLMServer`
over vLLM, `build_llm_deployment`) that the next stage on the same model finds running. A stage
sends its request rows to it through Ray Data LLM's serve-deployment processor
(`ServeDeploymentProcessorConfig`): one OpenAI chat request per row, with the row's own
sampling parameters and seed, and the reply's text and token counts in the columns every
engine writes (generated_text, num_input_tokens, num_generated_tokens).

The same path runs on CPU in tests with `HFChatServer`: a Serve deployment of the HF engine
that answers the same `chat` method with the same reply, batching the requests it has in hand
into one `generate` call (`serve.batch`), as vLLM batches its running requests.

Kept Serve pools share the driver's `KeptPools`, the one-pool-at-a-time rule and the
releasing of the actor pools (kept_pool.py). One difference: a Serve application is detached,
so a driver killed mid-run leaves it running. The rerun finds it (same model, same settings,
same name) and goes on with it; `serve delete NAME` frees it if the run is abandoned, and a
run that finds kept pools it does not know says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from ray import serve

from temporal_ray.config import EngineConfig
from temporal_ray.engines.kept_pool import POOL_PREFIX, KeptPool, KeptPools, current_job, pool_name
from temporal_ray.engines.openai_chat import (
    chat_body,
    chat_completion,
    chat_request_row,
    engine_columns,
)

if TYPE_CHECKING:
    import ray.data
    from ray.serve import Application

    from temporal_ray.engines.protocol import Engine

DEPLOYMENT = "engine"
"""The deployment's name inside each kept pool's application (named after the pool)."""

SOURCE_COLUMNS = "source_columns"
"""Preprocess notes the request row's columns here, so postprocess returns exactly those
plus the engine's (the processor's row also holds the whole reply)."""


def chat_request(row: dict[str, Any], served_model: str, dtype: str | None) -> dict[str, Any]:
    """Preprocess: a request row -> the processor's row: the method to call on the deployment
    and an OpenAI chat request (`dtype` names its class; None sends a plain dict)."""
    return {**row, SOURCE_COLUMNS: list(row), "method": "chat", "dtype": dtype,
            "request_kwargs": {**chat_body(row, served_model), "stream": False}}


def from_chat_response(row: dict[str, Any]) -> dict[str, Any]:
    """Postprocess: the request row's own columns plus the engine columns from the reply."""
    own = set(row[SOURCE_COLUMNS]) | {SOURCE_COLUMNS, "method", "dtype", "request_kwargs"}
    reply = {key: value for key, value in row.items() if key not in own}
    out = {column: row[column] for column in row[SOURCE_COLUMNS]}
    out.update(engine_columns(
        reply, what=f"the kept pool's reply to request {row.get('request_id')}"))
    return out


class HFChatServer:
    """The CPU engine of a kept Serve pool: the HF engine behind the `chat` method that Serve
    LLM's `LLMServer` has. Requests in hand are generated together, up to `batch_size`."""

    def __init__(self, model_path: str, served_model: str, use_gpu: bool, batch_size: int):
        from temporal_ray.engines.hf import HFEngine

        self.engine: Engine = HFEngine(model_path, use_gpu=use_gpu)
        self.served_model = served_model
        self.generate_batch.set_max_batch_size(batch_size)

    async def chat(self, request: dict[str, Any]):
        """One OpenAI chat request -> one chat.completion (streamed, as `LLMServer` does)."""
        # Through Ray Data the messages come as an array; vLLM's request model reads any
        # sequence, as this does.
        row = chat_request_row({**request, "messages": list(request["messages"])},
                               self.served_model)
        yield chat_completion(await self.generate_batch(row), self.served_model)

    @serve.batch(batch_wait_timeout_s=0.05)
    async def generate_batch(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        import pandas as pd

        return self.engine(pd.DataFrame(rows)).to_dict("records")


def hf_chat_deployment(model_path: str, engine: EngineConfig, served_model: str) -> Application:
    """The CPU engine as a Serve application of `engine.actors` replicas."""
    deployment = serve.deployment(
        HFChatServer, name=DEPLOYMENT, num_replicas=engine.actors,
        # Room for two batches per replica: the next one waits at the replica, not the router.
        max_ongoing_requests=2 * engine.batch_size,
        ray_actor_options={"num_cpus": engine.cpus_per_actor, "num_gpus": engine.gpus_per_actor,
                           **({"resources": engine.resources} if engine.resources else {})})
    return deployment.bind(model_path, served_model, engine.gpus_per_actor > 0,
                           engine.batch_size)


def vllm_chat_deployment(model_path: str, engine: EngineConfig, served_model: str
                         ) -> Application:
    """Ray Serve LLM's vLLM deployment (needs the gpu extra and GPUs)."""
    from ray.serve.llm import LLMConfig, build_llm_deployment

    from temporal_ray.engines.vllm import serve_llm_config

    config = LLMConfig(**serve_llm_config(model_path, engine, served_model))
    return build_llm_deployment(config, override_serve_options={"name": DEPLOYMENT})


Deployment = Callable[[str, EngineConfig, str], "Application"]


def start_serve_pool(model_path: str, engine: EngineConfig, pools: KeptPools,
                     deployment: Deployment = vllm_chat_deployment) -> str:
    """The running Serve pool for `model_path` on `engine`, started (after releasing any other
    kept pool) when there is none; returns its name, which is also its application's."""
    name = pool_name(model_path, engine)
    if name in pools.running():
        return name
    pools.release()
    started = time.time()
    serve.start(proxy_location="Disabled")  # called through handles only: no HTTP proxy
    apps = serve.status().applications
    others = sorted(app for app in apps if app.startswith(POOL_PREFIX) and app != name)
    if others:  # left by a killed driver, or another run's: they hold their GPUs
        print(f"warning: other kept Serve pools are running on this cluster: {others}; "
              "`serve delete NAME` frees one that no run uses", flush=True)
    if name in apps and apps[name].status == "RUNNING":
        print(f"kept Serve pool {name} was running already (left by a killed driver?): "
              "using it", flush=True)
    else:  # new, or one that failed: (re)deploy, and wait until it is ready
        serve.run(deployment(model_path, engine, name), name=name, route_prefix=None)
    pools.add(KeptPool(name, current_job(), actors=[], app=name))
    print(f"kept Serve pool {name} for {model_path}: ready in {time.time() - started:.1f} s",
          flush=True)
    return name


def run_serve_pool(requests: ray.data.Dataset, model_path: str, engine: EngineConfig,
                   pools: KeptPools, deployment: Deployment = vllm_chat_deployment
                   ) -> ray.data.Dataset:
    """`requests` through the kept Serve pool of `model_path`."""
    from ray.data.llm import ServeDeploymentProcessorConfig, build_processor

    name = start_serve_pool(model_path, engine, pools, deployment)
    pools.count_call(name)
    dtypes: dict[str, Any] = {}  # the CPU engine takes the request as a plain dict
    if deployment is vllm_chat_deployment:
        from ray.serve.llm.openai_api_models import ChatCompletionRequest

        dtypes = {"ChatCompletionRequest": ChatCompletionRequest}
    config = ServeDeploymentProcessorConfig(
        deployment_name=DEPLOYMENT, app_name=name, dtype_mapping=dtypes,
        # One caller actor is enough: its batch holds requests for every replica, all sent at
        # once, and Ray Data runs up to four batches of an async UDF at a time, so a batch's
        # slow tail does not leave the replicas idle. Serve spreads the requests.
        concurrency=1, batch_size=engine.batch_size * (engine.max_actors or engine.actors))
    preprocess = partial(chat_request, served_model=name,
                         dtype="ChatCompletionRequest" if dtypes else None)
    processor = build_processor(config, preprocess=preprocess, postprocess=from_chat_response)
    return processor(requests)
