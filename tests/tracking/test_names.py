"""What is logged under which name, worked by hand."""

from __future__ import annotations

import math

from temporal_ray.tracking.names import (
    config_params,
    split_record,
    stage_tags,
    step_points,
)


def test_a_config_becomes_dotted_text_parameters():
    assert config_params({"dpo": {"beta": 0.1, "lora": {"rank": None}}, "pools": {}}) == {
        "dpo.beta": "0.1", "dpo.lora.rank": ""}


def test_a_manifest_splits_into_numbers_and_labels():
    numbers, labels = split_record({
        "stage": "iter_0/pairs", "kind": "pairs", "pairs": 12, "dropped": {"tie": 3},
        "reused": False, "shared_pass": None, "mean_gap": math.nan, "finished_at": 1e9,
        "roles": ["present"]})
    assert numbers == {"pairs": 12.0, "dropped.tie": 3.0}
    assert labels == {"stage": "iter_0/pairs", "kind": "pairs", "reused": "False",
                      "roles": "['present']"}


def test_history_steps_become_points_shifted_by_the_stages_before():
    history = [{"step": 1, "epoch": 0, "loss": 0.69, "lr": 1e-3, "tokens": 90},
               {"step": 2, "epoch": 0, "loss": 0.61, "lr": 5e-4, "tokens_per_s": 45.0}]
    assert step_points("sft", history, offset=4) == [
        ("sft/loss", 0.69, 5), ("sft/lr", 1e-3, 5), ("sft/epoch", 0.0, 5),
        ("sft/loss", 0.61, 6), ("sft/lr", 5e-4, 6), ("sft/tokens_per_s", 45.0, 6),
        ("sft/epoch", 0.0, 6)]


def test_stage_tags_name_iteration_stage_kind_and_method():
    assert stage_tags("iter_1/model_future", "dpo", "temporal") == {
        "stage": "model_future", "iteration": "1", "kind": "dpo", "method": "temporal"}
    assert stage_tags("model", "sft", None) == {"stage": "model", "kind": "sft"}
