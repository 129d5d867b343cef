"""LoRA + DeepSpeed ZeRO-3 on two real Ray Train workers (gloo): DPO (the IPO loss) trains only
the adapters, with gradient checkpointing on and the reference being the same model with its
adapter off; the adapter it saves loads with peft, and the merged export loads with
AutoModelForCausalLM and computes what base + adapter computes. A worker fails once mid-run:
the group restarts from an adapter-only checkpoint (the frozen base reloads from the start
model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from temporal_ray.config import DPOConfig, LoraConfig
from temporal_ray.stages.dpo import train_dpo
from temporal_ray.storage.files import write_rows

pytestmark = pytest.mark.slow

PAIRS = [{"prompt": f"What is {i} plus {i}?", "chosen": f"It is {2 * i}.",
          "rejected": "I like trains and the sea."} for i in range(8)]


def test_lora_dpo_on_zero3_saves_adapter_and_merged_model(tiny_model, ray_cluster, tmp_path):
    from peft import PeftModel
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    write_rows(PAIRS, str(tmp_path / "pairs.parquet"))
    dpo = DPOConfig(loss="ipo", lr=1e-2, min_lr=1e-3, warmup_ratio=0.0, batch_size=8,
                    micro_batch_size=2, epochs=2, max_length=64, checkpoint_every=1,
                    max_failures=1, zero_stage=3, gradient_checkpointing=True,
                    reference="resident",
                    lora=LoraConfig(enabled=True, rank=4, alpha=8, dropout=0.0))
    out = tmp_path / "out"
    metrics = train_dpo(str(tmp_path / "pairs.parquet"), tiny_model, str(out), dpo,
                        storage_path=str(tmp_path / "ray_train"), name="lora",
                        fail_once_at_step=1)
    assert (out / ".fault_injected").exists()

    # The adapter starts at zero, so the adapter-off reference equals the policy: every
    # log-ratio is 0 and the IPO loss is (1 / (2 beta))^2.
    assert metrics["loss_before"] == pytest.approx((1 / (2 * dpo.beta)) ** 2, abs=1e-4)
    assert [h["step"] for h in metrics["history"]] == [1, 2]
    assert metrics["loss_after"] < metrics["loss_before"]

    # The adapter holds LoRA weights only, and they moved away from zero.
    adapter = out / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 4 and set(config["target_modules"]) == set(dpo.lora.target_modules)
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as f:
        names = list(f.keys())
        assert names and all("lora_" in n for n in names)
        assert any(f.get_tensor(n).abs().sum() > 0 for n in names if "lora_B" in n)

    # base + adapter (peft) and the merged export compute the same thing, unlike the base.
    ids = torch.tensor([[1, 5, 9, 14, 3, 7]])
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        base_logits = base(ids).logits
        peft_logits = PeftModel.from_pretrained(base, str(adapter)).eval()(ids).logits
        merged_logits = AutoModelForCausalLM.from_pretrained(str(out))(ids).logits
    assert torch.allclose(peft_logits, merged_logits, atol=1e-4)
    assert not torch.allclose(base_logits, merged_logits, atol=1e-4)
    assert (Path(out) / "tokenizer_config.json").exists()


def test_lora_on_one_base_continues_the_start_models_adapter(tiny_model, lora_checkpoint,
                                                            ray_cluster, tmp_path):
    """lora.base 'initial': the start model is a LoRA checkpoint of M0. The workers build M0
    with the start model's adapter and train that adapter on; the new adapter names M0 (not
    the start model) as its base, so every model of the run is M0 plus one adapter."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from temporal_ray.core.batching import collate, tokenize_pair
    from temporal_ray.core.dpo_loss import sequence_logps
    from temporal_ray.storage.files import read_rows

    write_rows(PAIRS, str(tmp_path / "pairs.parquet"))
    dpo = DPOConfig(lr=1e-2, min_lr=1e-3, warmup_ratio=0.0, batch_size=8, micro_batch_size=4,
                    max_length=64, zero_stage=3, checkpoint_every=0,
                    lora=LoraConfig(enabled=True, rank=4, alpha=8, dropout=0.0,
                                    target_modules=["q_proj", "v_proj"], base="initial"))
    out = tmp_path / "out"
    train_dpo(str(tmp_path / "pairs.parquet"), lora_checkpoint, str(out), dpo,
              storage_path=str(tmp_path / "ray_train"), name="one-base")

    # The policy started as the start model (M0 + its adapter): the reference log-probs the
    # workers stored equal the merged start checkpoint's, computed here by hand.
    start = AutoModelForCausalLM.from_pretrained(lora_checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(lora_checkpoint)
    stored = {r["pair_index"]: r for r in read_rows(str(out / "reference_logps"))}
    assert sorted(stored) == list(range(len(PAIRS)))
    for index, pair in enumerate(PAIRS):
        example = tokenize_pair(tokenizer, pair["prompt"], pair["chosen"], pair["rejected"], 64)
        batch = collate([example], tokenizer.pad_token_id)
        with torch.no_grad():
            logps = sequence_logps(start(input_ids=batch.input_ids,
                                         attention_mask=batch.attention_mask).logits,
                                   batch.labels)
        assert stored[index]["chosen_logp"] == pytest.approx(float(logps[0]), abs=1e-4)
        assert stored[index]["rejected_logp"] == pytest.approx(float(logps[1]), abs=1e-4)

    # The adapter moved on from the start adapter, and it applies to M0.
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == tiny_model
    before = load_file(f"{lora_checkpoint}/adapter/adapter_model.safetensors")
    after = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert before.keys() == after.keys()
    assert any(not torch.allclose(before[k], after[k]) for k in before)
    ids = torch.tensor([[1, 5, 9, 14, 3, 7]])
    with torch.no_grad():
        on_m0 = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model),
                                          str(out / "adapter")).eval()(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(str(out))(ids).logits
    assert torch.allclose(on_m0, merged, atol=1e-4)


def test_an_adapter_of_another_rank_is_refused_with_its_path(tiny_model, lora_checkpoint):
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from temporal_ray.training.deepspeed_setup import load_adapter_weights

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                           PeftLoraConfig(r=8, target_modules=["q_proj", "v_proj"],
                                          task_type="CAUSAL_LM"))
    with pytest.raises(ValueError, match="lora.rank and target_modules") as err:
        load_adapter_weights(model, f"{lora_checkpoint}/adapter")
    assert lora_checkpoint in str(err.value)
