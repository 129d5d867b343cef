"""The vLLM adapter's settings, and Ray's own config classes accept what we build."""

import pytest

from temporal_ray.config import EngineConfig
from temporal_ray.engines.vllm import vllm_processor_kwargs


def test_processor_kwargs_follow_the_engine_config():
    engine = EngineConfig(kind="vllm", actors=3, batch_size=64, tensor_parallel_size=2,
                          pipeline_parallel_size=2, max_model_len=4096)
    kwargs = vllm_processor_kwargs("/models/m0", engine)
    assert kwargs["model_source"] == "/models/m0"
    assert kwargs["concurrency"] == 3
    assert kwargs["batch_size"] == 64
    assert kwargs["engine_kwargs"]["tensor_parallel_size"] == 2
    assert kwargs["engine_kwargs"]["pipeline_parallel_size"] == 2
    assert kwargs["engine_kwargs"]["max_model_len"] == 4096
    assert kwargs["engine_kwargs"]["enable_prefix_caching"] is True


def test_ray_data_llm_accepts_the_config():
    llm = pytest.importorskip("ray.data.llm")
    engine = EngineConfig(kind="vllm", actors=2, tensor_parallel_size=2)
    config = llm.vLLMEngineProcessorConfig(**vllm_processor_kwargs("/models/m0", engine))
    assert config.model_source == "/models/m0"
    assert config.concurrency == 2
    assert config.engine_kwargs["tensor_parallel_size"] == 2
    assert config.engine_kwargs["enable_prefix_caching"] is True


def test_node_type_resources_go_into_the_placement_bundles():
    llm = pytest.importorskip("ray.data.llm")
    engine = EngineConfig(kind="vllm", actors=2, tensor_parallel_size=4, gpus_per_actor=4,
                          resources={"gpu-h100-node": 0.01})
    kwargs = vllm_processor_kwargs("/models/m0", engine)
    assert kwargs["placement_group_config"]["bundle_per_worker"] == {"GPU": 1,
                                                                     "gpu-h100-node": 0.01}
    config = llm.vLLMEngineProcessorConfig(**kwargs)
    assert config.placement_group_config["bundle_per_worker"]["gpu-h100-node"] == 0.01
    # On GPUs without node-type resources, Ray's default bundle (a GPU and a CPU) is right.
    assert "placement_group_config" not in vllm_processor_kwargs(
        "/m", EngineConfig(kind="vllm", gpus_per_actor=1))


def test_user_prompt_survives_the_prompt_column_that_ray_stages_write():
    from temporal_ray.engines.vllm import restore_prompt, stash_prompt

    request = {"prompt_id": "p1", "prompt": "Name a fruit.", "messages": [], "role": "past"}
    stashed = stash_prompt(request)
    assert "prompt" not in stashed
    # what Ray's chat-template and vLLM stages add to the row
    engine_row = {**stashed, "prompt": "<|user|>\nName a fruit.<|end|>\n<|assistant|>\n",
                  "generated_text": "A banana.", "num_input_tokens": 9,
                  "num_generated_tokens": 3}
    out = restore_prompt(engine_row)
    assert out["prompt"] == "Name a fruit."
    assert out["generated_text"] == "A banana." and out["prompt_id"] == "p1"
    # vLLM keeps the space its first token decodes to; every engine writes the text without.
    assert restore_prompt({**engine_row, "generated_text": " A banana.\n"})[
        "generated_text"] == "A banana."


def test_an_autoscaling_pool_is_a_min_max_concurrency():
    llm = pytest.importorskip("ray.data.llm")
    engine = EngineConfig(kind="vllm", actors=1, max_actors=4, tensor_parallel_size=2)
    assert vllm_processor_kwargs("/m", engine)["concurrency"] == (1, 4)
    config = llm.vLLMEngineProcessorConfig(**vllm_processor_kwargs("/m", engine))
    assert tuple(config.concurrency) == (1, 4)
    with pytest.raises(ValueError, match="max_actors .2. is below engine.actors .3."):
        EngineConfig(actors=3, max_actors=2)


def test_lora_on_one_base_turns_on_the_engines_adapters():
    llm = pytest.importorskip("ray.data.llm")
    engine = EngineConfig(kind="vllm", actors=2)
    kwargs = vllm_processor_kwargs("/models/m0", engine, lora_rank=16)
    assert kwargs["engine_kwargs"]["enable_lora"] is True
    assert kwargs["engine_kwargs"]["max_lora_rank"] == 16
    assert kwargs["engine_kwargs"]["max_loras"] == 3  # past, present, future at most
    config = llm.vLLMEngineProcessorConfig(**kwargs)
    assert config.engine_kwargs["enable_lora"] is True
    assert "enable_lora" not in vllm_processor_kwargs("/models/m0", engine)["engine_kwargs"]


def test_the_device_chooses_dtype_eager_mode_memory_and_bundles():
    """One place decides what differs by device; a field set in the config wins."""
    from temporal_ray.engines.vllm import device_engine_kwargs, worker_bundle

    cpu = EngineConfig(kind="vllm", cpus_per_actor=2)
    assert device_engine_kwargs(cpu) == {"dtype": "float32", "enforce_eager": True,
                                         "enable_chunked_prefill": False,
                                         "kv_cache_memory_bytes": 2**30}
    # Without a CPU bundle the stage would ask for a GPU and wait for one forever.
    assert worker_bundle(cpu) == {"CPU": 2}
    assert vllm_processor_kwargs("/m", cpu)["placement_group_config"] == {
        "bundle_per_worker": {"CPU": 2}, "strategy": "PACK"}
    gpu = EngineConfig(kind="vllm", gpus_per_actor=1)
    assert device_engine_kwargs(gpu) == {"dtype": "auto", "enforce_eager": False}
    assert worker_bundle(gpu) is None
    chosen = EngineConfig(kind="vllm", dtype="bfloat16", enforce_eager=False, kv_cache_gib=0.5,
                          gpu_memory_utilization=0.8)
    assert device_engine_kwargs(chosen) == {"dtype": "bfloat16", "enforce_eager": False,
                                            "enable_chunked_prefill": False,
                                            "kv_cache_memory_bytes": 2**29,
                                            "gpu_memory_utilization": 0.8}
    llm = pytest.importorskip("ray.data.llm")
    config = llm.vLLMEngineProcessorConfig(**vllm_processor_kwargs("/m", cpu))
    assert config.engine_kwargs["dtype"] == "float32"


def test_the_adapters_rank_rounds_up_to_one_vllm_takes():
    from temporal_ray.engines.vllm import vllm_lora_rank

    assert [vllm_lora_rank(r) for r in (1, 4, 8, 9, 16, 300, 512)] == [1, 8, 8, 16, 16, 320, 512]
    with pytest.raises(ValueError, match="largest adapter rank vLLM serves"):
        vllm_lora_rank(1024)
    engine_kwargs = vllm_processor_kwargs("/m", EngineConfig(kind="vllm"), lora_rank=4)
    assert engine_kwargs["engine_kwargs"]["max_lora_rank"] == 8


def test_a_request_without_a_prompt_passes_through_and_leaves_without_rays_text():
    from temporal_ray.engines.vllm import restore_prompt, stash_prompt

    stashed = stash_prompt({"prompt_id": "p1", "messages": []})
    engine_row = {**stashed, "prompt": "<|user|>\n<|assistant|>\n", "generated_text": "Yes."}
    assert restore_prompt(engine_row) == {"prompt_id": "p1", "messages": [],
                                          "generated_text": "Yes."}
