"""An engine pool over a Ray Data dataset: request rows in, the same rows with text out.

One pool serves one model (a role's checkpoint). `hf`: an actor pool of `HFEngine`s
(`ActorPoolStrategy`), one model copy per actor. `vllm`: Ray Data LLM's processor, which runs its
own actor pool of vLLM engines. `http`: Ray Data LLM's HTTP processor posting to an
OpenAI-compatible endpoint (`model_path` is then the model id it serves). Either way the
dataset keeps its other columns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from temporal_ray.config import EngineConfig

if TYPE_CHECKING:
    import ray.data


def run_engine_pool(requests: ray.data.Dataset, model_path: str,
                    engine: EngineConfig) -> ray.data.Dataset:
    # One block per engine batch, so every actor of the pool gets work (Ray Data hands a
    # block to one actor; a single block would leave the rest of the pool idle).
    requests = requests.repartition(target_num_rows_per_block=engine.batch_size)
    if engine.kind == "vllm":
        from temporal_ray.generate.vllm_engine import build_vllm_processor

        return build_vllm_processor(model_path, engine)(requests)
    if engine.kind == "http":
        from temporal_ray.generate.http_engine import build_http_processor

        return build_http_processor(model_path, engine)(requests)

    import ray.data

    from temporal_ray.generate.hf_engine import HFEngine

    return requests.map_batches(
        HFEngine,
        fn_constructor_kwargs={"model_path": model_path, "use_gpu": engine.gpus_per_actor > 0},
        batch_size=engine.batch_size,
        batch_format="pandas",
        compute=(ray.data.ActorPoolStrategy(min_size=engine.actors, max_size=engine.max_actors)
                 if engine.max_actors else ray.data.ActorPoolStrategy(size=engine.actors)),
        num_cpus=engine.cpus_per_actor,
        num_gpus=engine.gpus_per_actor,
        resources=engine.resources or None,
    )
