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
from temporal_ray.dpo.trainer import train_dpo
from temporal_ray.storage import write_rows

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
