"""vLLM's own engine for kept pools (vllm_engine.py): its arguments are the processor's. The
engine itself runs in tests/engines/test_kept_vllm_pool.py, inside kept pool actors."""

from __future__ import annotations

from temporal_ray.config import EngineConfig
from temporal_ray.engines.vllm import vllm_engine_kwargs
from temporal_ray.engines.vllm_engine import engine_arguments


def test_a_kept_engine_takes_the_processors_engine_arguments():
    engine = EngineConfig(kind="vllm", max_model_len=256)
    assert engine_arguments(engine, lora_rank=4) == vllm_engine_kwargs(engine, lora_rank=4)
    assert engine_arguments(engine, None)["kv_cache_memory_bytes"] == 2**30  # CPU's default


def test_a_multi_gpu_engine_places_its_workers_with_vllms_ray_executor():
    engine = EngineConfig(kind="vllm", gpus_per_actor=1, tensor_parallel_size=2)
    assert engine_arguments(engine, None)["distributed_executor_backend"] == "ray"
    one_gpu = EngineConfig(kind="vllm", gpus_per_actor=1)
    assert "distributed_executor_backend" not in engine_arguments(one_gpu, None)
