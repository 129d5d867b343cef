"""Engine pools kept running between stages (`engine.keep_alive`): Ray actors the driver owns.

A Ray Data actor pool lives as long as its dataset, so every generate or judge stage starts
its engines again and loads the model again: seconds on CPU (worker processes importing torch),
20 s for a vLLM engine on the tiny model, minutes for a large model on GPUs. A kept pool is a
set of engine actors (`PoolEngine`: the hf engine, or vLLM through its own API,
vllm_engine.py) started once for the pool's settings. A stage streams its requests out of Ray
Data in blocks of a few batches, sends them to the actors (two blocks queued on each, so an
engine never waits for its next one) and hands the outputs back to Ray Data, which writes them.

One engine for a whole run. The next stage finds the pool running:
- on the same model, it is "reused";
- with LoRA on one base, every model of the run is the base or an adapter of it, served by
  LoRA request from the run directory: the pool loads M0 once and serves M_i, M_f and the
  judge until the run ends;
- on another model of the same architecture and tokenizer (M_{t+1} after a DPO stage, without
  LoRA), the engines load its weights in place ("reloaded": vLLM's `reload_weights`, as RL
  systems update their rollout engines): 0.03 s on the tiny model against 20 s for a new
  vLLM engine (2026-12-02);
- otherwise (other settings, another architecture) the pool is released and a new one
  "started". `KeptPools.counts` says how many engines started and how many loads were in place.

Plain actors rather than Ray Serve: on CPU a Serve replica generated each batch 20 to 60%
slower than a plain actor (bench/README.md), and Ray 2.60's Serve LLM loads LoRA adapters only
from s3://, gs:// or Azure storage, and cannot take new weights into a running engine.

Kept pools hold their CPUs and GPUs until released: a DPO stage releases them only when its
workers would not fit beside them (`make_room`), a stage that needs a pool of other settings
(kept or not) releases the running one first (one pool at a time, so two pools never wait on
each other's resources), and the run releases them when it ends. The driver's `KeptPools`,
made for the run, holds them. The actors belong to the driver, so a killed driver takes them
with it. An actor that dies is restarted by Ray (with the model it was started with, then the
pool's current weights), which sends its blocks again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from temporal_ray.config import EngineConfig

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    import pandas as pd
    import ray.data

    from temporal_ray.engines.protocol import Engine

BLOCKS_QUEUED_PER_ENGINE = 2
ROOM_WAIT_S = 10.0
"""How long `make_room` waits for resources to come free: the workers of a stage's last
tasks hand their CPUs back to Ray a few seconds after the stage ends (on the tiny run, one
CPU of four was still held right after a judge stage)."""
POOL_PREFIX = "kept-pool-"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "tokenizer.model", "chat_template.jinja")
KEYS_THAT_NAME = {"_name_or_path", "name_or_path", "transformers_version", "is_local",
                  "local_files_only", "_commit_hash"}
"""Keys of config.json and tokenizer_config.json that say where and how a checkpoint was
saved or loaded, not what it computes: they differ between checkpoints of one model."""


class PoolEngine:
    """One engine of a kept pool: the hf engine, or vLLM through its own API."""

    def __init__(self, model_path: str, engine: EngineConfig, lora_rank: int | None = None):
        self.settings, self.lora_rank = engine, lora_rank
        self.engine: Engine = self._engine(model_path)
        self.model_path = model_path

    def _engine(self, model_path: str) -> Engine:
        if self.settings.kind == "vllm":
            from temporal_ray.engines.vllm_engine import VLLMEngine

            return VLLMEngine(model_path, self.settings, self.lora_rank)
        from temporal_ray.engines.hf import HFEngine

        return HFEngine(model_path, use_gpu=self.settings.gpus_per_actor > 0)

    def generate(self, block: pd.DataFrame, batch_size: int, model_path: str | None = None
                 ) -> pd.DataFrame:
        """A block of requests for `model_path` (None: the model served now): vLLM takes it
        whole and schedules it itself; the hf engine generates `batch_size` rows at a time."""
        import pandas as pd

        if model_path is not None:
            # A restarted actor comes back with the model it was first started with.
            self.load(model_path)
        if self.settings.kind == "vllm":
            return self.engine(block)
        return pd.concat([self.engine(block.iloc[start: start + batch_size])
                          for start in range(0, len(block), batch_size)])

    def load(self, model_path: str) -> None:
        """Serve `model_path` (same architecture and tokenizer) from now on, without a new
        process: vLLM loads its weights into the running engine; the hf engine is built
        again in this process (its imports and start-up are done)."""
        if model_path == self.model_path:
            return
        if self.settings.kind == "vllm":
            self.engine.load_weights(model_path)  # type: ignore[attr-defined]
        else:
            self.engine = self._engine(model_path)
        self.model_path = model_path

    def describe(self) -> dict[str, Any]:
        """Which process serves which model, and the adapters it has loaded (for tests and
        debugging)."""
        return {"pid": os.getpid(), "model": self.model_path,
                "adapters": sorted(getattr(self.engine, "adapters", {}))}


@dataclass
class KeptPool:
    name: str
    job_id: str
    """The Ray job that owns the actors: a pool of an earlier `ray.init` is gone."""
    actors: list[Any]
    model: str
    """The model the engines serve now (with LoRA on one base, the base)."""

    def shut_down(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)


def pool_name(engine: EngineConfig, lora_rank: int | None = None) -> str:
    """The kept pool of `engine`'s settings: the same settings always give the same name, so
    a later stage finds the pool, whichever model of the run it serves then."""
    settings = engine.model_dump(include={"kind", "actors", "cpus_per_actor", "gpus_per_actor",
                                          "resources", "tensor_parallel_size",
                                          "pipeline_parallel_size", "max_model_len", "dtype",
                                          "enforce_eager", "kv_cache_gib",
                                          "gpu_memory_utilization"})
    key = json.dumps({**settings, "lora_rank": lora_rank}, sort_keys=True)
    return f"{POOL_PREFIX}{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _read(model_path: str, name: str) -> bytes | None:
    from pyarrow.fs import FileType

    from temporal_ray.storage.files import resolve

    fs, path = resolve(f"{model_path.rstrip('/')}/{name}")
    if fs.get_file_info(path).type != FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return f.read()


def _content(model_path: str, name: str) -> Any:
    """A file of the checkpoint: JSON without `KEYS_THAT_NAME`, other files as bytes; None
    when missing."""
    raw = _read(model_path, name)
    if raw is None or not name.endswith(".json"):
        return raw
    content = json.loads(raw)
    return ({k: v for k, v in content.items() if k not in KEYS_THAT_NAME}
            if isinstance(content, dict) else content)


def same_shape(model: str, other: str) -> bool:
    """Whether `other`'s weights can be loaded into an engine of `model`: the same config and
    the same tokenizer (but for the keys that only say where they were saved)."""
    config = _content(model, "config.json")
    return config is not None and config == _content(other, "config.json") and all(
        _content(model, name) == _content(other, name) for name in TOKENIZER_FILES)


def current_job() -> str | None:
    import ray

    return ray.get_runtime_context().get_job_id() if ray.is_initialized() else None


class KeptPools:
    """The pools a driver keeps running between stages: created at the start of a run or an
    evaluation and released at its end (`with KeptPools() as pools:`), passed to every stage
    that generates or judges. At most one runs at a time. It also counts the engines every
    pool of the run started, kept or not (`counts`)."""

    def __init__(self) -> None:
        self._pools: dict[str, KeptPool] = {}
        self.uses: list[str] = []
        """Per stage call on a kept pool: "started", "reloaded" or "reused"."""
        self.engine_starts = 0
        self.weight_loads = 0

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

    def release(self) -> list[str]:
        """Shut every kept pool down, freeing its CPUs and GPUs; returns their names."""
        released = self.running()
        for name in released:
            self._pools[name].shut_down()
        self._pools.clear()  # pools of an earlier Ray session are gone already
        return released

    def make_room(self, needs: dict[str, float], wait_s: float = ROOM_WAIT_S) -> list[str]:
        """Release the kept pools unless the cluster has `needs` (Ray resources, e.g. a DPO
        job's workers) free beside them within `wait_s`; returns the pools released."""
        import ray

        if not self.running():
            return []
        deadline = time.time() + wait_s
        while True:
            free = ray.available_resources()
            short = {resource: round(free.get(resource, 0), 2)
                     for resource, amount in needs.items() if free.get(resource, 0) < amount}
            if not short:
                return []
            if time.time() > deadline:
                break
            time.sleep(0.5)
        released = self.release()
        logger.info("released kept pool(s) %s: the next job needs %s, and only %s were free "
                    "beside them", released, needs, short)
        return released

    def counts(self) -> dict[str, int]:
        """Engines started so far (kept or not; an autoscaling pool's added actors are not
        seen) and weight loads into running engines: what a run's summary reports."""
        return {"engine_starts": self.engine_starts, "weight_loads": self.weight_loads}

    def count_stage_pool(self, engine: EngineConfig) -> None:
        """A stage starts a pool of its own (not kept): its engines count as started."""
        self.engine_starts += engine.actors

    def calls(self) -> int:
        """A mark for `use_since`: stage calls on kept pools so far."""
        return len(self.uses)

    def use_since(self, mark: int) -> str | None:
        """For a stage's manifest, given `calls()` from before it ran: whether it started a
        kept pool, loaded new weights into one, or found one ready; None when it used none."""
        uses = self.uses[mark:]
        return next((use for use in ("started", "reloaded", "reused") if use in uses), None)

    def use(self, model_path: str, engine: EngineConfig, lora_rank: int | None = None) -> str:
        """The running pool of `engine`'s settings, serving `model_path`: found, loaded with
        its weights, or started (after releasing any other kept pool); returns its name."""
        name = pool_name(engine, lora_rank)
        pool = self._pools.get(name) if name in self.running() else None
        if pool is not None and pool.model == model_path:
            use = "reused"
        elif pool is not None and same_shape(pool.model, model_path):
            self._load(pool, model_path)
            use = "reloaded"
        else:
            self.release()
            self._start(name, model_path, engine, lora_rank)
            use = "started"
        self.uses.append(use)
        return name

    def _start(self, name: str, model_path: str, engine: EngineConfig,
               lora_rank: int | None) -> None:
        import ray

        started = time.time()
        # A multi-GPU vLLM engine places its workers itself (vllm_engine.engine_arguments).
        own_gpus = engine.kind == "hf" or (
            engine.tensor_parallel_size * engine.pipeline_parallel_size == 1)
        engine_actor = ray.remote(PoolEngine).options(
            num_cpus=engine.cpus_per_actor,
            num_gpus=engine.gpus_per_actor if own_gpus else 0,
            resources=engine.resources or None,
            # A dead engine is started again, and the blocks it had are sent again.
            max_restarts=-1, max_task_retries=-1)
        actors = [engine_actor.remote(model_path, engine, lora_rank)
                  for _ in range(engine.actors)]
        ray.get([actor.__ray_ready__.remote() for actor in actors])
        self._pools[name] = KeptPool(name, current_job(), actors, model_path)
        self.engine_starts += engine.actors
        logger.info("kept pool %s (%s) for %s: %d engine(s) started in %.1f s", name,
                    engine.kind, model_path, engine.actors, time.time() - started)

    def _load(self, pool: KeptPool, model_path: str) -> None:
        import ray

        started = time.time()
        ray.get([actor.load.remote(model_path) for actor in pool.actors])
        pool.model = model_path
        self.weight_loads += len(pool.actors)
        logger.info("kept pool %s: weights of %s loaded in place in %.2f s", pool.name,
                    model_path, time.time() - started)


def dispatch(actors: list[Any], blocks: Iterable[pd.DataFrame], batch_size: int,
             model_path: str | None = None, queued: int = BLOCKS_QUEUED_PER_ENGINE,
             on_rows: Callable[[int], None] | None = None) -> list[Any]:
    """Send each block (for `model_path`) to the first engine with room (`queued` blocks
    each); returns the output object refs, in no particular order. With `on_rows`, waits
    for every output, calling it with each block's rows as the block comes back."""
    import ray

    free = [actor for _ in range(queued) for actor in actors]
    in_flight: dict[Any, tuple[Any, int]] = {}  # output ref -> (its actor, its block's rows)
    done = []

    def one_back() -> Any:
        (ready,), _ = ray.wait(list(in_flight), num_returns=1)
        actor, rows = in_flight.pop(ready)
        done.append(ready)
        if on_rows is not None:
            on_rows(rows)
        return actor

    for block in blocks:
        if not free:
            free.append(one_back())
        actor = free.pop(0)
        in_flight[actor.generate.remote(block, batch_size, model_path)] = (actor, len(block))
    while on_rows is not None and in_flight:
        one_back()
    return done + list(in_flight)


def run_kept_pool(requests: ray.data.Dataset, model_path: str, engine: EngineConfig,
                  pools: KeptPools, lora_rank: int | None = None, rows: int | None = None,
                  on_rows: Callable[[int], None] | None = None) -> ray.data.Dataset:
    """`requests` (`rows` of them, if known) through the kept pool serving `model_path` (with
    `lora_rank`, also the adapters of it the rows name): blocks of `engine.block_rows(rows)`
    rows to the engines. With `on_rows`, the outputs are all back when it returns, each
    block's rows counted as it came back."""
    import ray.data

    name = pools.use(model_path, engine, lora_rank)
    blocks = requests.iter_batches(batch_size=engine.block_rows(rows), batch_format="pandas")
    outputs = dispatch(pools.actors(name), blocks, engine.batch_size, model_path,
                       on_rows=on_rows)
    if not outputs:  # no request: an empty dataset of the request columns
        return requests.limit(0)
    return ray.data.from_pandas_refs(outputs)
