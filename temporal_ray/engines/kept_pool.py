"""Engine pools kept running between stages (`engine.keep_alive`): Ray actors the driver owns.

A Ray Data actor pool lives as long as its dataset, so every generate or judge stage starts
its engines again and loads the model again: seconds on CPU (worker processes importing torch),
minutes for a large model on GPUs. A kept pool is a set of `HFEngine` actors started once for
a model and pool settings. A stage streams its requests out of Ray Data in blocks of a few
batches, sends them to the actors (two blocks queued on each, so an engine never waits for its
next one) and hands the outputs back to Ray Data, which writes them; the next stage on the
same model, or with LoRA on one base on any adapter of it, finds the actors running.

Plain actors rather than a Ray Serve application: on CPU, a Serve replica generated each batch
20 to 60% slower than a plain actor and batches waited at its router; bench/README.md has the
figures. Kept vLLM pools are Ray Serve LLM applications (serve_pool.py), held by the same
`KeptPools` and released by the same rules.

Kept pools hold their CPUs and GPUs until released: a DPO stage releases them before it
starts, a stage that needs another pool (kept or not) releases the running one first (one
pool at a time, so two pools never wait on each other's resources), and the run releases them
when it ends. The driver's `KeptPools`, made for the run, holds them. The actors belong to the
driver, so a killed driver takes them with it. An actor that dies is restarted by Ray, which
sends its blocks again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from temporal_ray.config import EngineConfig

if TYPE_CHECKING:
    import pandas as pd
    import ray.data

    from temporal_ray.engines.protocol import Engine

BLOCKS_QUEUED_PER_ENGINE = 2
POOL_PREFIX = "kept-pool-"


class PoolEngine:
    """One engine of a kept pool: an `HFEngine` for the pool's model."""

    def __init__(self, model_path: str, use_gpu: bool):
        from temporal_ray.engines.hf import HFEngine

        self.engine: Engine = HFEngine(model_path, use_gpu=use_gpu)

    def generate(self, block: pd.DataFrame, batch_size: int) -> pd.DataFrame:
        """A block of requests, `batch_size` rows at a time."""
        import pandas as pd

        return pd.concat([self.engine(block.iloc[start: start + batch_size])
                          for start in range(0, len(block), batch_size)])

    def describe(self) -> dict[str, Any]:
        """Which process serves, and the adapters it has loaded (for tests and debugging)."""
        return {"pid": os.getpid(), "adapters": sorted(self.engine.adapters)}


@dataclass
class KeptPool:
    name: str
    job_id: str
    """The Ray job that owns the actors: a pool of an earlier `ray.init` is gone."""
    actors: list[Any]
    """The engine actors; none for a Serve pool (serve_pool.py)."""
    app: str | None = None
    """The Ray Serve application of a Serve pool."""
    calls: int = 0
    """Stage calls it has served (`KeptPools.calls`, `KeptPools.use_since`)."""

    def shut_down(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        if self.app is not None:
            from ray import serve

            serve.delete(self.app)
            if not serve.status().applications:
                # Nothing else is served: stop Serve too, rather than leave it running without
                # HTTP proxies for the next Serve user of the cluster (`temporal-ray serve`).
                serve.shutdown()


def pool_name(model_path: str, engine: EngineConfig) -> str:
    """The kept pool of `model_path` on `engine`'s settings: the same model and settings
    always give the same name, so a later stage finds the pool."""
    settings = engine.model_dump(include={"kind", "actors", "max_actors", "cpus_per_actor",
                                          "gpus_per_actor", "resources", "tensor_parallel_size",
                                          "pipeline_parallel_size", "max_model_len"})
    key = json.dumps({"model": model_path, **settings}, sort_keys=True)
    return f"{POOL_PREFIX}{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def current_job() -> str | None:
    import ray

    return ray.get_runtime_context().get_job_id() if ray.is_initialized() else None


class KeptPools:
    """The pools a driver keeps running between stages: created at the start of a run or an
    evaluation and released at its end (`with KeptPools() as pools:`), passed to every stage
    that generates or judges. At most one runs at a time."""

    def __init__(self) -> None:
        self._pools: dict[str, KeptPool] = {}

    def __enter__(self) -> KeptPools:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def running(self) -> list[str]:
        """The kept pools running in this driver's Ray session."""
        job = current_job()
        return [name for name, pool in self._pools.items() if pool.job_id == job]

    def actors(self, name: str) -> list[Any]:
        return self._pools[name].actors

    def add(self, pool: KeptPool) -> None:
        self._pools[pool.name] = pool

    def release(self) -> list[str]:
        """Shut every kept pool down, freeing its CPUs and GPUs; returns their names."""
        released = self.running()
        for name in released:
            self._pools[name].shut_down()
        self._pools.clear()  # pools of an earlier Ray session are gone already
        return released

    def count_call(self, name: str) -> None:
        """A stage call is about to use the running pool `name`."""
        self._pools[name].calls += 1

    def calls(self) -> dict[str, int]:
        """Stage calls served so far by each running pool: what `use_since` compares."""
        return {name: self._pools[name].calls for name in self.running()}

    def use_since(self, before: dict[str, int]) -> str | None:
        """For a stage's manifest, given `calls()` from before it ran: whether it ran on a
        kept pool it started ("started") or found running ("reused"); None when it used none."""
        for name, calls in self.calls().items():
            if calls > before.get(name, 0):
                return "reused" if name in before else "started"
        return None

    def start(self, model_path: str, engine: EngineConfig) -> str:
        """The running pool of engine actors for `model_path` on `engine`, started (after
        releasing any other kept pool) when there is none; returns its name."""
        import time

        import ray

        name = pool_name(model_path, engine)
        if name in self.running():
            return name
        self.release()
        started = time.time()
        engine_actor = ray.remote(PoolEngine).options(
            num_cpus=engine.cpus_per_actor, num_gpus=engine.gpus_per_actor,
            resources=engine.resources or None,
            # A dead engine is started again, and the blocks it had are sent again.
            max_restarts=-1, max_task_retries=-1)
        actors = [engine_actor.remote(model_path, engine.gpus_per_actor > 0)
                  for _ in range(engine.actors)]
        ray.get([actor.__ray_ready__.remote() for actor in actors])
        self.add(KeptPool(name, current_job(), actors))
        print(f"kept pool {name} for {model_path}: {engine.actors} engine(s) started in "
              f"{time.time() - started:.1f} s", flush=True)
        return name


def dispatch(actors: list[Any], blocks: Iterable[pd.DataFrame], batch_size: int,
             queued: int = BLOCKS_QUEUED_PER_ENGINE) -> list[Any]:
    """Send each block to the first engine with room (`queued` blocks each); returns the
    output object refs, in no particular order."""
    import ray

    free = [actor for _ in range(queued) for actor in actors]
    in_flight: dict[Any, Any] = {}
    done = []
    for block in blocks:
        if not free:
            (ready,), _ = ray.wait(list(in_flight), num_returns=1)
            free.append(in_flight.pop(ready))
            done.append(ready)
        actor = free.pop(0)
        in_flight[actor.generate.remote(block, batch_size)] = actor
    return done + list(in_flight)


def run_kept_pool(requests: ray.data.Dataset, model_path: str, engine: EngineConfig,
                  pools: KeptPools, rows: int | None = None) -> ray.data.Dataset:
    """`requests` (`rows` of them, if known) through the kept pool of `model_path`: blocks of
    `engine.block_rows(rows)` rows to the engines, which generate `engine.batch_size` rows
    at a time."""
    import ray.data

    name = pools.start(model_path, engine)
    pools.count_call(name)
    blocks = requests.iter_batches(batch_size=engine.block_rows(rows), batch_format="pandas")
    outputs = dispatch(pools.actors(name), blocks, engine.batch_size)
    if not outputs:  # no request: an empty dataset of the request columns
        return requests.limit(0)
    return ray.data.from_pandas_refs(outputs)
