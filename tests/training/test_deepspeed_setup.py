"""The DeepSpeed config the training stages build, and the ZeRO-3 leaf blocks they mark
(no engine is started)."""

from __future__ import annotations

import pytest

from temporal_ray.config import DPOConfig
from temporal_ray.training.deepspeed_setup import deepspeed_config, mark_blocks


def test_zero_options_reach_deepspeeds_zero_section_beside_our_own_fields():
    cfg = DPOConfig(batch_size=8, micro_batch_size=2, zero_stage=3, offload_params=True,
                    zero_options={"stage3_prefetch_bucket_size": 50_000_000,
                                  "stage3_param_persistence_threshold": 1_000_000})
    zero = deepspeed_config(cfg, world_size=2)["zero_optimization"]
    assert zero["stage"] == 3 and zero["offload_param"]["device"] == "cpu"
    assert zero["stage3_prefetch_bucket_size"] == 50_000_000
    assert zero["stage3_param_persistence_threshold"] == 1_000_000
    assert zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert deepspeed_config(cfg, world_size=2)["gradient_accumulation_steps"] == 2


def test_zero_options_are_checked_against_deepspeeds_own_config():
    with pytest.raises(ValueError, match="DeepSpeed refuses: stage3_prefetch_bucket_sise"):
        DPOConfig(zero_options={"stage3_prefetch_bucket_sise": 1})
    with pytest.raises(ValueError, match="stage3_max_live_parameters"):
        DPOConfig(zero_options={"stage3_max_live_parameters": "lots"})
    with pytest.raises(ValueError, match=r"\['offload_param', 'stage'\]: set zero_stage"):
        DPOConfig(zero_options={"stage": 2, "offload_param": {"device": "cpu"}})


@pytest.mark.parametrize("lora", [False, True])
def test_zero3_marks_each_transformer_block_a_leaf(tiny_model, lora):
    from deepspeed.utils import z3_leaf_module
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"],
                                                 task_type="CAUSAL_LM"))
    assert mark_blocks(model, DPOConfig(zero_stage=3)) == ["LlamaDecoderLayer"]
    leaves = [type(m).__name__ for m in model.modules() if z3_leaf_module(m)]
    assert leaves == ["LlamaDecoderLayer"] * model.config.num_hidden_layers


@pytest.mark.parametrize("cfg", [DPOConfig(zero_stage=2),
                                 DPOConfig(zero_stage=3, zero3_whole_blocks=False)])
def test_no_leaf_blocks_without_zero3_or_when_turned_off(tiny_model, cfg):
    from deepspeed.utils import z3_leaf_module
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert mark_blocks(model, cfg) == []
    assert not any(z3_leaf_module(m) for m in model.modules())
