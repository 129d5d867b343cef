"""What one engine pool serves (pool.py): no cluster needed."""

import pytest

from temporal_ray.config import EngineConfig
from temporal_ray.engines.pool import check_servable, name_model, pool_models


def test_without_lora_on_one_base_a_pool_serves_one_model():
    assert pool_models({"present": "/m1"}, one_base=False) == ("/m1", {"present": "/m1"})
    with pytest.raises(ValueError, match="one pool serves one model"):
        pool_models({"present": "/m1", "past": "/m0"}, one_base=False)


def test_one_base_serves_the_base_and_its_adapters(tiny_model, lora_checkpoint):
    base, served = pool_models({"present": lora_checkpoint, "past": tiny_model}, one_base=True)
    assert base == tiny_model
    assert served == {"present": f"{lora_checkpoint}/adapter", "past": tiny_model}
    row = name_model({"role": "present", "prompt": "Hi"}, served, "role")
    assert row == {"role": "present", "prompt": "Hi", "model": f"{lora_checkpoint}/adapter"}


def test_models_of_different_bases_are_refused_with_each_base(tmp_path, lora_checkpoint):
    other = str(tmp_path / "another-m0")
    with pytest.raises(ValueError, match="not adapters of one base") as err:
        pool_models({"present": lora_checkpoint, "past": other}, one_base=True)
    assert other in str(err.value) and lora_checkpoint in str(err.value)


def test_pools_that_cannot_load_adapters_are_refused_before_starting():
    served = {"present": "/run/iter_0/model/adapter", "past": "/m0"}
    endpoint = EngineConfig(kind="http", url="http://judge:8000/v1/chat/completions")
    check_servable(served, "/m0", EngineConfig(kind="vllm"))  # a shared filesystem: fine
    check_servable({"past": "/m0"}, "/m0", endpoint)  # no adapter: fine
    with pytest.raises(ValueError, match="http engine"):
        check_servable(served, "/m0", endpoint)
    with pytest.raises(ValueError, match="remote"):
        check_servable({"present": "s3://bucket/run/iter_0/model/adapter"}, "s3://bucket/m0",
                       EngineConfig(kind="vllm"))
