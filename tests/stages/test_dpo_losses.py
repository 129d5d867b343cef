"""A DPO loss variant trains on two real Ray Train workers with DeepSpeed ZeRO-3, with a
resident reference model (a frozen second DeepSpeed engine) instead of precomputed reference
log-probs, and padding-free packed micro-batches (tests/core/test_packing.py checks that they
give the padded log-probs). (sigmoid trains in tests/test_miniature.py, IPO in
tests/training/test_lora.py; every variant's arithmetic matches TRL in
tests/stages/test_dpo_trl_parity.py.)"""

import math

import pytest

from temporal_ray.config import DPOConfig
from temporal_ray.stages.dpo import train_dpo
from temporal_ray.storage.files import write_rows

pytestmark = pytest.mark.slow

PAIRS = [{"prompt": f"What is {i} plus {i}?", "chosen": f"It is {2 * i}.",
          "rejected": "I like trains and the sea."} for i in range(8)]


@pytest.mark.parametrize(("loss", "reference"), [("sigmoid_norm", "resident")])
def test_loss_variants_train_on_the_workers(tiny_model, ray_cluster, tmp_path, loss, reference):
    write_rows(PAIRS, str(tmp_path / "pairs.parquet"))
    dpo = DPOConfig(loss=loss, reference=reference, lr=1e-3, min_lr=1e-4, warmup_ratio=0.0,
                    batch_size=8, micro_batch_size=2, epochs=2, max_length=64,
                    checkpoint_every=0, packing=True)
    metrics = train_dpo(str(tmp_path / "pairs.parquet"), tiny_model, str(tmp_path / "out"), dpo,
                        storage_path=str(tmp_path / "ray_train"), name=loss)
    assert metrics["optimizer_steps"] == 2
    # Before any update the policy is the reference: every log-ratio is 0.
    assert metrics["history"] and metrics["loss_before"] == pytest.approx(
        {"ipo": (1 / (2 * 0.1)) ** 2, "sigmoid_norm": math.log(2)}[loss], abs=1e-5)
    assert metrics["loss_after"] < metrics["loss_before"]
    assert metrics["margin_after"] > 0
    # Tokens: 8 pairs over 2 ranks x 4 (no pair repeated), every one each of 2 epochs; the
    # resident reference scores every training micro-batch too.
    from transformers import AutoTokenizer

    from temporal_ray.core.batching import pair_tokens, tokenize_pair

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    sizes = [pair_tokens(tokenize_pair(tokenizer, p["prompt"], p["chosen"], p["rejected"], 64))
             for p in PAIRS]
    assert metrics["dpo_forward_tokens"] == 2 * sum(f for f, _ in sizes)
    assert metrics["dpo_backward_tokens"] == 2 * sum(b for _, b in sizes)
    assert metrics["reference_forward_tokens"] == metrics["dpo_forward_tokens"]
    assert 0 < metrics["dpo_backward_tokens"] < metrics["dpo_forward_tokens"]
