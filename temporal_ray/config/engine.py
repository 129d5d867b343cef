"""The engine section: how generation and judging run (hf, vllm or an http endpoint), shared by
the run's pools, each role's pool changes (`pools`) and the judges' own engines."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from temporal_ray.config.base import Placement, Section


class EngineConfig(Section):
    kind: Literal["hf", "vllm", "http"] = "hf"
    """`hf`: transformers generate. `vllm`: Ray Data LLM's vLLM processor (its CPU build where
    gpus_per_actor is 0). Both run on GPUs when gpus_per_actor > 0, else on CPUs.
    `http`: an OpenAI-compatible endpoint served elsewhere (Ray Data LLM's HTTP processor);
    the model path is then the model id the endpoint serves."""
    url: str | None = None
    """For kind `http`: the chat completions URL, e.g. http://judge:8000/v1/chat/completions
    (`temporal-ray serve`, a vLLM server, or any OpenAI-compatible API)."""
    api_key_env: Placement[str | None] = None
    """For kind `http`: the environment variable that holds the endpoint's API key, sent as a
    bearer token. The key itself never goes into a config or the run directory."""
    qps: Placement[int | None] = Field(None, gt=0)
    """For kind `http`: requests per second per actor (empty: no limit)."""
    max_retries: Placement[int] = Field(3, ge=0)
    """For kind `http`: retries of a request that failed to connect or got 429/5xx (a
    request that runs out of them fails the stage: no answer differs)."""
    actors: Placement[int] = Field(1, gt=0)
    """Actors in each generation or judge pool (vLLM: engines, each tensor_parallel_size x
    pipeline_parallel_size GPUs); with max_actors, the size the pool starts at."""
    max_actors: Placement[int | None] = Field(None, gt=0)
    """Let the pool grow to this many actors while work is queued (Ray Data's autoscaling
    actor pool; on an autoscaling cluster new GPU nodes are added for them) and shrink back
    when idle. Empty: a fixed pool of `actors`."""
    batch_size: Placement[int] = Field(16, gt=0)
    """Requests per batch sent to one actor. A row's text does not depend on the rows that
    share its batch (each samples with its own seed; tests/engines/test_hf.py)."""
    batches_per_block: Placement[int] = Field(4, gt=0)
    """Batches in one Ray Data block: what an actor takes per task, and one output file.
    Every task costs Ray some scheduling and a small write, so larger blocks cost less (two hf
    engines on two CPU cores: 1.76x a plain loop's tokens/s with blocks of 4, 1.52x with
    blocks of 1; bench/README.md). A stage too small to give every actor a block of this
    size gets smaller blocks (`block_rows`), down to one batch."""
    gpus_per_actor: float = Field(0, ge=0)
    """Changes results: 0 runs the engine on CPUs (float32), above 0 on GPUs (bf16)."""
    cpus_per_actor: float = Field(1, ge=0)
    """Changes results on CPUs: Ray sets an actor's OMP_NUM_THREADS, and so torch's threads,
    from it, and a reduction split over more threads rounds differently."""
    tensor_parallel_size: int = Field(1, gt=0)
    """vLLM: GPUs one engine's layers are split over; changes results (the partial sums of a
    split matmul are added in another order)."""
    pipeline_parallel_size: int = Field(1, gt=0)
    """vLLM: pipeline stages per engine; an engine takes tensor x pipeline GPUs, which may span
    nodes (a model too large for one node's GPUs). Left result-affecting: untested here."""
    resources: Placement[dict[str, float]] = {}
    """Extra Ray resources each actor (vLLM: each GPU bundle) asks for, e.g. a node type's
    custom resource, so generation lands on (and scales) the node type meant for it."""
    max_model_len: int | None = None
    """vLLM context length; empty means the model's own."""
    dtype: str | None = None
    """vLLM: the dtype of weights and activations; empty: the device's choice (`auto`, the
    model's own, on GPUs; float32 on CPUs)."""
    # CUDA graphs and the KV cache's size change the kernels and batch shapes vLLM runs on
    # GPUs, which this machine cannot test: left result-affecting, like dtype.
    enforce_eager: bool | None = None
    """vLLM: run without CUDA graphs; empty: the device's choice (graphs on GPUs, eager on
    CPUs, which have none)."""
    kv_cache_gib: float | None = Field(None, gt=0)
    """vLLM: GiB of memory for one engine's KV cache; empty: the device's choice (on GPUs what
    gpu_memory_utilization leaves after the weights; on CPUs 1 GiB of the node's RAM)."""
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    """vLLM on GPUs: the share of a GPU's memory one engine takes; empty: vLLM's default."""
    keep_alive: Placement[bool] = False
    """Keep the pool's engines running between stages, as actors of a fixed size (`actors`):
    the next stage on the same model, or with LoRA on one base on any adapter of it, starts
    without loading anything, and one on the next model of the same architecture loads its
    weights into the running engines. Released before a DPO stage whose workers would not fit
    beside it, and at the end of the run."""

    def block_rows(self, rows: int | None = None) -> int:
        """Rows of a Ray Data block for a stage of `rows` requests (None: unknown): whole
        batches, `batches_per_block` of them, or fewer when the stage is too small to give
        every actor the pool may have a block of that size."""
        batches = self.batches_per_block
        if rows:
            actors = self.max_actors or self.actors
            batches = max(1, min(batches, -(-rows // (self.batch_size * actors))))
        return self.batch_size * batches

    @property
    def pool_size(self) -> int | tuple[int, int]:
        """Ray Data's `concurrency`: fixed, or (min, max) for an autoscaling pool."""
        return (self.actors, self.max_actors) if self.max_actors else self.actors

    @model_validator(mode="after")
    def _max_actors_not_below_actors(self) -> EngineConfig:
        if self.max_actors is not None and self.max_actors < self.actors:
            raise ValueError(f"engine.max_actors ({self.max_actors}) is below engine.actors "
                             f"({self.actors})")
        return self

    @model_validator(mode="after")
    def _keep_alive_where_a_pool_can_be_kept(self) -> EngineConfig:
        if self.keep_alive and self.kind == "http":
            raise ValueError("engine.keep_alive works with the hf and vllm engines: an http "
                             "endpoint already runs on its own. Set keep_alive: false")
        if self.keep_alive and self.max_actors:
            raise ValueError("a kept pool (engine.keep_alive) has a fixed size: set "
                             "engine.actors and leave max_actors empty")
        return self

    @model_validator(mode="after")
    def _http_needs_url(self) -> EngineConfig:
        if self.kind == "http" and not self.url:
            raise ValueError("engine kind 'http' needs url (an OpenAI-compatible "
                             "/v1/chat/completions URL)")
        return self
