"""What a resume may change: the `Placement` fields, and only those."""

from __future__ import annotations

import pytest
from pydantic import Field

from temporal_ray.config import Config, EngineConfig, Placement, Section, load_config
from temporal_ray.config.resume import (
    config_changes,
    is_placement,
    placement_fields,
    results_hash,
)
from temporal_ray.miniature.config import MiniatureRunConfig

BASE = ["model.path=/m", "data.prompts=/p.jsonl"]
ENGINE = ["api_key_env", "qps", "max_retries", "actors", "max_actors", "batch_size",
          "batches_per_block", "resources", "keep_alive"]
TRAINING = ["resources_per_worker", "gpus_per_node", "gpu_memory_gib", "checkpoint_every",
            "max_failures"]


def tree(*overrides: str, schema: type[Config] = Config) -> dict:
    return load_config(None, [*BASE, *overrides], schema=schema).model_dump(mode="json")


def test_the_placement_fields_are_these_and_every_other_field_changes_results():
    """The whole list, so that marking a field (or a new field) is a change this test sees.
    Left result-affecting on purpose: engine.cpus_per_actor and training cpus_per_worker (Ray
    sets torch's CPU threads from them), gpus_per_actor (CPU or GPU), tensor and pipeline
    parallel sizes, vLLM's memory and eager settings, training workers and micro-batches."""
    expected = [*(f"{section}.{name}" for section in ("judge.engine", "engine",
                                                      "eval.judge.engine") for name in ENGINE),
                *(f"{section}.{name}" for section in ("dpo", "sft") for name in TRAINING),
                "ray.address", "ray.num_cpus", "storage.hub_cache"]
    assert sorted(placement_fields(Config)) == sorted(expected)
    # An experiment's own section is result-affecting throughout.
    assert sorted(placement_fields(MiniatureRunConfig)) == sorted(expected)
    for name in ("engine.cpus_per_actor", "engine.gpus_per_actor", "dpo.workers",
                 "dpo.micro_batch_size", "dpo.cpus_per_worker", "dpo.zero_stage",
                 "engine.tensor_parallel_size", "engine.kv_cache_gib", "generation.seed"):
        assert not is_placement(Config, name), name


class ToySection(Section):
    pool: Placement[int] = Field(1, gt=0)
    new_field: int = 3


class ToyConfig(Config):
    toy: ToySection = ToySection()


def test_an_unmarked_field_and_an_unknown_name_change_results():
    assert is_placement(ToyConfig, "toy.pool")
    assert not is_placement(ToyConfig, "toy.new_field")  # nobody classified it: the safe side
    assert not is_placement(ToyConfig, "toy.gone") and not is_placement(Config, "toy.pool")
    # The marker keeps the field's own checks and docstrings.
    assert ToySection.model_fields["pool"].metadata[0].gt == 0
    assert EngineConfig.model_fields["actors"].description.startswith("Actors in each")


def test_a_value_inside_a_placement_field_and_a_role_pool_field_are_placement():
    assert is_placement(Config, "engine.resources.gpu_node")
    assert is_placement(Config, "pools.future.max_actors")
    assert not is_placement(Config, "pools.future.dtype")
    assert not is_placement(Config, "dpo.zero_options.reduce_bucket_size")
    # A judge engine that appears where the run's engine served: not field by field.
    assert not is_placement(Config, "judge.engine")


def test_changes_name_field_old_new_and_kind():
    changes = config_changes(tree(), tree("engine.actors=3", "dpo.beta=0.2"))
    assert [(c.field, c.old, c.new, c.placement) for c in changes] == [
        ("dpo.beta", 0.1, 0.2, False), ("engine.actors", 1, 3, True)]
    assert str(changes[1]) == "engine.actors 1 -> 3"


@pytest.mark.parametrize(("old", "new", "expected"), [
    ((), ("pools={future: {actors: 4, max_actors: 8}}",),
     [("pools.future.actors", 1, 4, True), ("pools.future.max_actors", None, 8, True)]),
    (("pools={past: {batch_size: 8}}",), (),
     [("pools.past.batch_size", 8, 16, True)]),
    (("pools={past: {actors: 2}}",), ("engine.actors=2", "pools={past: {actors: 2}}"),
     [("engine.actors", 1, 2, True)]),
    (("pools={past: {dtype: float32}}",), (), [("pools.past.dtype", "float32", None, False)]),
])
def test_a_role_pool_added_or_dropped_compares_with_the_engine_it_changes(old, new, expected):
    changes = config_changes(tree(*old), tree(*new))
    assert [(c.field, c.old, c.new, c.placement) for c in changes] == expected


def test_a_field_added_since_the_saved_config_compares_at_its_default():
    saved = tree()
    del saved["engine"]["qps"], saved["generation"]["overlong"]
    assert config_changes(saved, tree()) == []
    assert [c.field for c in config_changes(saved, tree("generation.overlong=truncate"))] == [
        "generation.overlong"]


@pytest.mark.parametrize("batch_size", [1, 3, 16])
@pytest.mark.parametrize("actors", [1, 2, 5])
@pytest.mark.parametrize("rows", [None, 1, 7, 100, 1000])
def test_blocks_are_whole_batches_whatever_the_pool_size(batch_size, actors, rows):
    """Pool sizes and blocks per batch move whole batches between actors (and where Ray
    regroups rows, a row's text does not depend on its batch: tests/engines/test_hf.py)."""
    for per_block in (1, 4):
        engine = EngineConfig(batch_size=batch_size, actors=actors, batches_per_block=per_block)
        assert engine.block_rows(rows) % batch_size == 0


def test_the_sft_train_run_keeps_its_name_through_a_placement_change():
    """`temporal-ray sft` names its Ray Train run (whose checkpoints a resume continues from)
    after this hash."""
    sft = load_config(None, BASE).sft
    same = results_hash(sft)
    for update in ({"max_failures": 5}, {"resources_per_worker": {"trainer": 1.0}},
                   {"checkpoint_every": 10}):
        assert results_hash(sft.model_copy(update=update)) == same
    for update in ({"lr": 2e-5}, {"workers": 4}, {"lora": sft.lora.model_copy(
            update={"rank": 8})}):
        assert results_hash(sft.model_copy(update=update)) != same
    assert len(same) == 16 and results_hash(load_config(None, BASE).sft) == same
