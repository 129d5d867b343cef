"""Engine pools kept running between stages (`engine.keep_alive`), as Ray Serve applications.

A Ray Data actor pool lives as long as its dataset, so every generate or judge stage starts
its engines again and loads the model again: seconds on CPU (worker processes importing torch),
minutes for a large model on GPUs. With `keep_alive` the pool is a Ray Serve application of
`HFEngine` replicas named after the model and the engine settings. A stage's Ray Data tasks
send each batch to it through a deployment handle (Ray Serve routes it to a free replica), and
the next stage that needs the same model, or with LoRA on one base any adapter of it, finds
the pool running. This is the pattern of Ray Data LLM's serve-deployment processor, with a
batch per request so that batches are the same as an actor pool's.

Kept pools hold their CPUs and GPUs until released: a DPO stage releases them before it
starts, the run releases them when it ends, and a stage that needs another pool releases the
running one first (one kept pool at a time, so two pools never wait on each other's
resources).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from temporal_ray.config import EngineConfig

if TYPE_CHECKING:
    import pandas as pd
    import ray.data

APP_PREFIX = "temporal-ray-pool-"
CALL_ATTEMPTS = 4
"""A batch whose replica died is sent again (Ray Serve starts a replacement replica)."""


class PoolEngine:
    """One replica: an `HFEngine` for the pool's model, one batch at a time."""

    def __init__(self, model_path: str, use_gpu: bool):
        from temporal_ray.generate.hf_engine import HFEngine

        self.engine = HFEngine(model_path, use_gpu=use_gpu)

    def generate(self, batch: pd.DataFrame) -> pd.DataFrame:
        return self.engine(batch)

    def describe(self) -> dict[str, Any]:
        """Which process serves, and the adapters it has loaded (for tests and debugging)."""
        return {"pid": os.getpid(), "adapters": sorted(self.engine.adapters)}


def pool_app_name(model_path: str, engine: EngineConfig) -> str:
    """The Serve application of `model_path` on `engine`'s settings: the same model and
    settings always give the same name, so a later stage finds the pool by name."""
    settings = engine.model_dump(include={"actors", "max_actors", "cpus_per_actor",
                                          "gpus_per_actor", "resources"})
    key = json.dumps({"model": model_path, **settings}, sort_keys=True)
    return APP_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:12]


def running_pools() -> list[str]:
    """The kept pools running on the cluster (without starting Serve when it is not)."""
    import ray
    from ray import serve

    if not ray.is_initialized():
        return []
    return [name for name in serve.status().applications if name.startswith(APP_PREFIX)]


def release_kept_pools() -> list[str]:
    """Shut every kept pool down, freeing its CPUs and GPUs; returns their names."""
    from ray import serve

    released = running_pools()
    for name in released:
        serve.delete(name)
    return released


@contextmanager
def releasing_kept_pools(keeps_pools: bool) -> Iterator[None]:
    """Release the kept pools when the block ends, however it ends (when the run keeps any:
    a run without them never imports Ray Serve)."""
    try:
        yield
    finally:
        if keeps_pools:
            release_kept_pools()


def start_kept_pool(model_path: str, engine: EngineConfig) -> str:
    """The running pool for `model_path` on `engine`, started (after releasing any other
    kept pool) when there is none; returns its application name."""
    from ray import serve

    name = pool_app_name(model_path, engine)
    running = running_pools()
    if name in running:
        return name
    for other in running:
        serve.delete(other)
    scaling: dict[str, Any] = (
        {"autoscaling_config": {"min_replicas": engine.actors, "max_replicas": engine.max_actors,
                                "target_ongoing_requests": 1}}
        if engine.max_actors else {"num_replicas": engine.actors})
    deployment = serve.deployment(PoolEngine, name="engine").options(
        # One batch at a time per replica: a batch already fills its CPU or GPU, and the
        # others wait at the router for the first free replica.
        max_ongoing_requests=1,
        ray_actor_options={"num_cpus": engine.cpus_per_actor, "num_gpus": engine.gpus_per_actor,
                           "resources": dict(engine.resources)},
        **scaling)
    started = time.time()
    serve.start(proxy_location="Disabled")  # handles only: no HTTP proxy
    serve.run(deployment.bind(model_path, engine.gpus_per_actor > 0), name=name,
              route_prefix=None)
    print(f"kept pool {name} for {model_path}: {engine.actors} replica(s) started in "
          f"{time.time() - started:.1f} s", flush=True)
    return name


def call_kept_pool(batch: pd.DataFrame, app: str) -> pd.DataFrame:
    """Ray Data task: one batch through the kept pool `app`."""
    import ray.exceptions
    from ray import serve

    handle = serve.get_app_handle(app)
    for attempt in range(1, CALL_ATTEMPTS + 1):
        try:
            return handle.generate.remote(batch).result()
        except ray.exceptions.RayActorError:
            if attempt == CALL_ATTEMPTS:
                raise
            time.sleep(2.0 * attempt)  # the replacement replica is loading the model
    raise AssertionError("unreachable")


def run_kept_pool(requests: ray.data.Dataset, model_path: str,
                  engine: EngineConfig) -> ray.data.Dataset:
    """`requests` (blocks of engine.batch_size rows) through the kept pool of `model_path`."""
    import ray.data

    app = start_kept_pool(model_path, engine)
    replicas = engine.max_actors or engine.actors
    return requests.map_batches(
        call_kept_pool, fn_kwargs={"app": app}, batch_size=engine.batch_size,
        batch_format="pandas",
        # The tasks only wait on the replicas: no CPU of their own, two per replica so the
        # next batch is queued when a replica finishes one.
        num_cpus=0, compute=ray.data.TaskPoolStrategy(size=2 * replicas))
