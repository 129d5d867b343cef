"""An engine pool over a Ray Data dataset: request rows in, the same rows with text out.

A pool loads one model. `hf`: an actor pool of `HFEngine`s (`ActorPoolStrategy`), one model
copy per actor. `vllm`: Ray Data LLM's processor, which runs its own actor pool of vLLM
engines. With `keep_alive`, either engine runs in actors that outlive the stage and serve
every later stage of the run (kept_pool.py). `http`: Ray Data LLM's HTTP processor posting to
an OpenAI-compatible endpoint (`model_path` is then the model id it serves). Either way the
dataset keeps its other columns.

With LoRA on one base (`lora.base: initial`) a pool loads the base once and serves several
models: each request row names its model in a `model` column, the adapter's directory, or the
base's own path for the base (Ray Data LLM's convention, which the `hf` engine follows too).
`pool_models` works out the base and each role's adapter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from temporal_ray.config import EngineConfig
from temporal_ray.engines.kept_pool import KeptPools, run_kept_pool
from temporal_ray.storage.checkpoints import adapter_of

if TYPE_CHECKING:
    import ray.data


def pool_models(models: dict[str, str], one_base: bool) -> tuple[str, dict[str, str]]:
    """The model a pool loads, and per key (a role) the value its requests put in `model`.

    Without `one_base` the models must be one and the same (a pool serves one checkpoint).
    With it each model is a base or a LoRA checkpoint of that base; they must share it.
    """
    if not one_base:
        distinct = set(models.values())
        if len(distinct) != 1:
            raise ValueError(f"one pool serves one model without LoRA on one base; got {models}")
        only = distinct.pop()
        return only, dict.fromkeys(models, only)
    served = {key: adapter_of(path) or (path, None) for key, path in models.items()}
    bases = {base.rstrip("/") for base, _ in served.values()}
    if len(bases) != 1:
        raise ValueError(
            "lora.base is 'initial' but these models are not adapters of one base: "
            + ", ".join(f"{key}: {path} (base {served[key][0]})" for key, path in models.items()))
    base = bases.pop()
    return base, {key: adapter or base for key, (_, adapter) in served.items()}


def name_model(row: dict[str, Any], models: dict[str, str], key: str | None) -> dict[str, Any]:
    """Row map: the `model` column of a request, from the row's `key` column (its role), or
    the one model there is when `key` is None."""
    return {**row, "model": models[row[key]] if key else next(iter(models.values()))}


def check_servable(served: dict[str, str], base: str, engine: EngineConfig) -> None:
    """Refuse what a pool cannot serve before any actor starts."""
    adapters = {key: path for key, path in served.items() if path != base}
    if adapters and engine.kind == "http":
        raise ValueError(f"an http engine serves what its endpoint serves; it cannot load the "
                         f"adapters of {sorted(adapters)}: use lora.base 'start' or an hf or "
                         "vllm engine for these roles")
    if engine.kind == "vllm" and any("://" in path for path in adapters.values()):
        raise ValueError(f"vLLM loads adapters from a filesystem path, and these are remote: "
                         f"{adapters}; keep the run directory on a filesystem every GPU node "
                         "shares (NFS, a mounted bucket), or use lora.base 'start'")


@dataclass(frozen=True)
class EnginePool:
    """How a stage's requests are served: which engine, whether its models are one base with
    LoRA adapters, and the driver's kept pools."""

    engine: EngineConfig
    lora_rank: int | None = None
    """The models are one base and LoRA checkpoints of it (lora.base 'initial'), served by
    one pool with adapters of at most this rank; None: the pool serves one model."""
    kept: KeptPools | None = None
    """The driver's kept pools: where an `engine.keep_alive` pool lives, and the pool that a
    pool of other settings releases first (one at a time). None: no kept pool runs."""

    def kept_pools(self) -> KeptPools:
        if self.kept is None:
            raise ValueError("engine.keep_alive needs the driver's KeptPools "
                             "(EnginePool(engine, kept=pools))")
        return self.kept


def run_models_pool(requests: ray.data.Dataset, models: dict[str, str], key: str | None,
                    pool: EnginePool, rows: int | None = None,
                    on_rows: Callable[[int], None] | None = None) -> ray.data.Dataset:
    """One pool for `models` (key -> model directory, rows matched by their `key` column):
    the model itself, or with `pool.lora_rank` (LoRA on one base) their base, each request
    naming its adapter. `rows`: how many requests there are (at most), if known; `on_rows`:
    see `run_engine_pool`."""
    base, served = pool_models(models, one_base=pool.lora_rank is not None)
    check_servable(served, base, pool.engine)
    if all(path == base for path in served.values()) and not pool.engine.keep_alive:
        # No adapter: a plain pool of the base. (A kept pool keeps its LoRA slots: the next
        # stages' adapters will need them.)
        return run_engine_pool(requests, base, replace(pool, lora_rank=None), rows, on_rows)
    requests = requests.map(name_model, fn_kwargs={"models": served, "key": key})
    return run_engine_pool(requests, base, pool, rows, on_rows)


def run_engine_pool(requests: ray.data.Dataset, model_path: str, pool: EnginePool,
                    rows: int | None = None,
                    on_rows: Callable[[int], None] | None = None) -> ray.data.Dataset:
    """`requests` through a pool of `model_path`. With `pool.lora_rank`, the rows name
    adapters of `model_path` to serve. `rows`: how many requests there are (at most), if
    known, so that a small stage is cut into blocks small enough for every actor to get one.

    Without `on_rows` the outputs are a lazy dataset (a kept pool's: computing already).
    With it, they are computed when this returns, and `on_rows` was called with each block's
    rows as the block came back (a progress bar's update)."""
    engine, lora_rank = pool.engine, pool.lora_rank
    if engine.keep_alive:  # engine actors that outlive the stage
        return run_kept_pool(requests, model_path, engine, pool.kept_pools(), lora_rank, rows,
                             on_rows)
    outputs = run_stage_pool(requests, model_path, pool, rows)
    return outputs if on_rows is None else counted(outputs, on_rows)


def run_stage_pool(requests: ray.data.Dataset, model_path: str, pool: EnginePool,
                   rows: int | None = None) -> ray.data.Dataset:
    """A pool that lives as long as its dataset (not kept): Ray Data's actor pool of the hf
    engine, or Ray Data LLM's vLLM or HTTP processor."""
    engine, lora_rank = pool.engine, pool.lora_rank
    if pool.kept is not None:
        pool.kept.release()  # one pool at a time: this one may need their CPUs or GPUs
        pool.kept.count_stage_pool(engine)
    # Ray Data hands a block to one actor per task: blocks of a few batches spread the work
    # over the pool (one block would leave the rest idle) at a few tasks' cost.
    requests = requests.repartition(target_num_rows_per_block=engine.block_rows(rows))
    if engine.kind == "vllm":
        from temporal_ray.engines.vllm import build_vllm_processor

        return build_vllm_processor(model_path, engine, lora_rank)(requests)
    if engine.kind == "http":
        from temporal_ray.engines.http import build_http_processor

        return build_http_processor(model_path, engine)(requests)
    return run_hf_pool(requests, model_path, engine)


def counted(outputs: ray.data.Dataset, on_rows: Callable[[int], None]) -> ray.data.Dataset:
    """`outputs` computed now, block by block as Ray Data yields them, each block's rows
    counted from its metadata: the same blocks, left in the object store where the workers
    wrote them (the driver never fetches one), for the stage to write or read."""
    import ray.data

    refs = []
    for bundle in outputs.iter_internal_ref_bundles():
        refs.extend(bundle.block_refs)
        on_rows(bundle.num_rows())
    # Ray Data reads each block by its own format, Arrow or pandas (a union's output mixes
    # them, as a kept pool's pandas blocks beside a stage pool's Arrow ones would).
    return ray.data.from_pandas_refs(refs) if refs else outputs.limit(0)


def run_hf_pool(requests: ray.data.Dataset, model_path: str, engine: EngineConfig
                ) -> ray.data.Dataset:
    """A Ray Data actor pool of `HFEngine`s, one model copy per actor."""
    import ray.data

    from temporal_ray.engines.hf import HFEngine

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
