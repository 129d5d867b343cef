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


def test_counted_counts_each_block_and_keeps_the_rows(ray_cluster):
    import ray.data

    from temporal_ray.engines.pool import counted

    source = ray.data.range(10, override_num_blocks=3).map_batches(
        lambda batch: batch.assign(text=[f"row {i}" for i in batch["id"]]), batch_format="pandas")
    seen: list[int] = []
    outputs = counted(source, seen.append)
    assert len(seen) >= 3 and sum(seen) == 10  # a count per block as it came back
    rows = outputs.to_pandas().sort_values("id")
    assert rows["text"].tolist() == [f"row {i}" for i in range(10)]


def test_counted_keeps_a_dataset_of_pandas_and_arrow_blocks_whole(ray_cluster):
    import pandas as pd
    import ray
    import ray.data

    from temporal_ray.engines.pool import counted

    # Pandas blocks (a kept pool's outputs are) beside Arrow ones: every row, once.
    pandas_blocks = ray.data.from_pandas_refs([ray.put(pd.DataFrame({"id": [0, 1]})),
                                               ray.put(pd.DataFrame({"id": [2]}))])
    both = pandas_blocks.union(ray.data.from_items([{"id": 3}, {"id": 4}]))
    seen: list[int] = []
    outputs = counted(both, seen.append)
    assert sum(seen) == 5
    assert sorted(outputs.to_pandas()["id"].tolist()) == [0, 1, 2, 3, 4]


def test_counted_of_nothing_is_empty(ray_cluster):
    import ray.data

    from temporal_ray.engines.pool import counted

    seen: list[int] = []
    assert counted(ray.data.range(3).limit(0), seen.append).count() == 0
    assert sum(seen) == 0
