"""The memory planner: DeepSpeed's own estimator numbers, hand-worked formulas, name lookup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from temporal_ray.training.plan import (
    GIB,
    LORA_MODULES,
    Architecture,
    MemoryPlan,
    load_architecture,
    plan_memory,
)

# vocab 100, hidden 16, intermediate 32, 2 layers, 4 heads of 4, 2 kv heads (kv width 8).
TINY = Architecture(name="tiny", vocab_size=100, hidden_size=16, intermediate_size=32,
                    num_layers=2, num_heads=4, num_kv_heads=2, tie_embeddings=False)
GEOMETRY = dict(micro_batch_size=1, max_length=2048, gradient_checkpointing=True)


def line(plan: MemoryPlan, prefix: str) -> float:
    (found,) = [x.gib_per_gpu for x in plan.lines if x.what.startswith(prefix)]
    return found


@pytest.mark.parametrize("offload_optimizer", [False, True])
def test_zero3_model_states_are_deepspeeds_estimate(offload_optimizer: bool) -> None:
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

    arch = load_architecture("llama-3.1-70b")
    cpu, gpu, _ = estimate_zero3_model_states_mem_needs(
        arch.total_params, arch.largest_layer_params, num_gpus_per_node=8, num_nodes=2,
        cpu_offload=offload_optimizer, cpu_offload_params=False, zero_init=True)
    plan = plan_memory(arch, gpus_per_node=8, nodes=2, zero_stage=3,
                       offload_optimizer=offload_optimizer, offload_params=False, **GEOMETRY)
    assert line(plan, "model states") == gpu / GIB
    assert plan.cpu_gib_per_node == (cpu / GIB if offload_optimizer else 0.0)
    assert plan.lines[0].source == "DeepSpeed estimate_zero3_model_states_mem_needs"


def test_zero2_model_states_are_deepspeeds_estimate() -> None:
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    arch = load_architecture("llama-3.1-8b")
    _, gpu = estimate_zero2_model_states_mem_needs(arch.total_params, num_gpus_per_node=8,
                                                   num_nodes=1, cpu_offload=False)
    plan = plan_memory(arch, gpus_per_node=8, nodes=1, zero_stage=2, offload_optimizer=False,
                       offload_params=False, **GEOMETRY)
    assert line(plan, "model states") == gpu / GIB


@pytest.mark.parametrize("name, published", [
    ("llama-3.1-8b", 8.03e9), ("llama-3.1-70b", 70.55e9),
    ("qwen2.5-7b", 7.62e9), ("mistral-7b-v0.3", 7.25e9),
])
def test_bundled_param_counts_match_published(name: str, published: float) -> None:
    assert load_architecture(name).total_params == pytest.approx(published, rel=0.005)


def test_tiny_param_counts_by_hand() -> None:
    # embed 100*16=1600; layer: q 256 + k 128 + v 128 + o 256 + 3*512 MLP + 2*16 norms = 2336;
    # final norm 16; lm_head 1600 -> 1600 + 2*2336 + 16 + 1600.
    assert TINY.total_params == 7888
    assert TINY.largest_layer_params == 1600  # the embedding, bigger than any 16x32 linear
    biased = Architecture(**{**TINY.__dict__, "attention_bias": True})
    assert biased.total_params == 7888 + 2 * (16 + 8 + 8)
    tied = Architecture(**{**TINY.__dict__, "tie_embeddings": True})
    assert tied.total_params == 7888 - 1600


def test_lora_params_by_hand() -> None:
    # rank 2: q 2*(16+16)=64, v 2*(16+8)=48 per layer, 2 layers.
    assert TINY.lora_params(2, ["q_proj", "v_proj"]) == 2 * (64 + 48)
    # + k 48, o 64, gate/up 2*(16+32)=96 each, down 2*(32+16)=96.
    assert TINY.lora_params(2, list(LORA_MODULES)) == 2 * (64 + 48 + 48 + 64 + 96 * 3)
    with pytest.raises(ValueError, match="lm_head"):
        TINY.lora_params(2, ["lm_head"])


@pytest.mark.parametrize("checkpointing, activation_bytes", [
    # tokens = 2 micro * 2 sequences * 8 = 32; one layer's working set 34*32*16 = 17408 bytes.
    (True, 2 * 32 * 16 * 2 + 17408),  # 2 saved layer inputs in bf16 + one layer recomputed
    (False, 2 * 17408),
])
def test_activation_and_logit_lines_by_hand(checkpointing: bool, activation_bytes: int) -> None:
    plan = plan_memory(TINY, gpus_per_node=1, nodes=1, zero_stage=0, offload_optimizer=False,
                       offload_params=False, micro_batch_size=2, max_length=8,
                       gradient_checkpointing=checkpointing)
    assert line(plan, "activations") == pytest.approx(activation_bytes / GIB)
    # bf16 logits + fp32 copy + fp32 log-softmax
    assert line(plan, "logits") == pytest.approx(32 * 100 * (2 + 4 + 4) / GIB)
    assert line(plan, "model states") == pytest.approx(20 * 7888 / GIB)
    assert line(plan, "CUDA") == 2.0


def test_lora_lines_by_hand() -> None:
    plan = plan_memory(TINY, gpus_per_node=2, nodes=1, zero_stage=3, offload_optimizer=False,
                       offload_params=False, micro_batch_size=1, max_length=8,
                       gradient_checkpointing=True, lora_rank=2, lora_targets=["q_proj"],
                       resident_reference=True)
    assert line(plan, "frozen base") == pytest.approx(2 * 7888 / 2 / GIB)
    assert line(plan, "LoRA adapter") == pytest.approx(16 * 2 * 64 / 2 / GIB)
    # With whole blocks gathered (the default) a block of 2336 outweighs the embedding's 1600.
    assert line(plan, "ZeRO-3 gather") == pytest.approx(2 * 2336 / GIB)
    assert not any(x.what.startswith("resident reference") for x in plan.lines)


def test_whole_block_gathers_count_a_block_or_the_embedding() -> None:
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

    assert TINY.block_params == 2336  # the layer of test_tiny_param_counts_by_hand
    assert TINY.largest_gather_params(whole_blocks=True) == 2336
    assert TINY.largest_gather_params(whole_blocks=False) == 1600  # the embedding
    for whole_blocks, largest in ((True, 2336), (False, 1600)):
        plan = plan_memory(TINY, gpus_per_node=2, nodes=1, zero_stage=3,
                           offload_optimizer=False, offload_params=False,
                           zero3_whole_blocks=whole_blocks, **GEOMETRY)
        _, gpu, _ = estimate_zero3_model_states_mem_needs(
            7888, largest, num_gpus_per_node=2, num_nodes=1, cpu_offload=False,
            cpu_offload_params=False, zero_init=True)
        assert line(plan, "model states") == gpu / GIB
    # Llama-3.1-70B's embedding (128256 x 8192) outweighs a block (about 856M): no change.
    arch = load_architecture("llama-3.1-70b")
    assert arch.largest_gather_params(True) == arch.largest_layer_params == 128256 * 8192


def test_resident_reference_is_a_sharded_bf16_copy() -> None:
    plan = plan_memory(TINY, gpus_per_node=4, nodes=1, zero_stage=3, offload_optimizer=False,
                       offload_params=False, micro_batch_size=1, max_length=8,
                       gradient_checkpointing=True, resident_reference=True)
    assert line(plan, "resident reference") == pytest.approx(2 * 7888 / 4 / GIB)


def test_load_architecture_from_local_config(tmp_path) -> None:
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({
        "model_type": "llama", "vocab_size": 100, "hidden_size": 16, "intermediate_size": 32,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "tie_word_embeddings": False}))
    assert load_architecture(str(model)) == Architecture(**{**TINY.__dict__, "name": "my-model"})


def test_load_architecture_hub_name_resolves_to_bundled() -> None:
    arch = load_architecture("meta-llama/Llama-3.1-70B-Instruct")
    assert arch.name == "llama-3.1-70b" and arch.num_layers == 80
    assert load_architecture("Qwen/Qwen2.5-7B-Instruct").attention_bias
    # A Hub id with a revision, as model.path may name one: still no download to plan it.
    assert load_architecture("meta-llama/Llama-3.1-8B@main").name == "llama-3.1-8b"


def test_load_architecture_unknown_name() -> None:
    with pytest.raises(ValueError) as caught:
        load_architecture("acme/Frobnicator-13B")
    message = str(caught.value)
    assert "acme/Frobnicator-13B" in message and "llama-3.1-8b" in message
    assert "config.json" in message


def test_70b_full_fine_tune_does_not_fit_one_node_but_lora_does() -> None:
    arch = load_architecture("llama-3.1-70b")
    full = plan_memory(arch, gpus_per_node=8, nodes=1, zero_stage=3, offload_optimizer=False,
                       offload_params=False, **GEOMETRY)
    assert not full.fits
    assert "80.00 GiB" in full.table() and "DOES NOT FIT" in full.table()
    lora = plan_memory(arch, gpus_per_node=8, nodes=1, zero_stage=3, offload_optimizer=False,
                       offload_params=False, lora_rank=16, lora_targets=list(LORA_MODULES),
                       **GEOMETRY)
    assert lora.fits and "fits" in lora.table()


def test_offload_params_needs_zero3() -> None:
    with pytest.raises(ValueError, match="stage 3"):
        plan_memory(TINY, gpus_per_node=1, nodes=1, zero_stage=2, offload_optimizer=True,
                    offload_params=True, micro_batch_size=1, max_length=8,
                    gradient_checkpointing=True)


# ------------------------------------------------------------------ shipped configs and the CLI

ROOT = Path(__file__).resolve().parents[2]
GPU_CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.yaml")
                     if p.name not in ("tiny.yaml", "miniature.yaml"))  # CPU configs


@pytest.mark.parametrize("path", GPU_CONFIGS, ids=[p.stem for p in GPU_CONFIGS])
def test_every_shipped_gpu_recipe_fits_its_gpus(path: Path) -> None:
    from temporal_ray.config import load_config
    from temporal_ray.training.plan import plan_stage

    cfg = load_config(path)
    for stage in ("dpo", "sft"):
        plan = plan_stage(cfg, stage)
        assert plan.fits, f"{path.name} {stage}:\n{plan.table()}"


def test_a_recipe_that_cannot_fit_is_refused_before_any_job(capsys) -> None:
    from temporal_ray.cli import main
    from temporal_ray.config import load_config
    from temporal_ray.training.plan import PlanError, check_fits

    path = ROOT / "configs" / "llama-3.1-70b.yaml"
    no_offload = ["dpo.offload_optimizer=false"]
    with pytest.raises(PlanError, match=r"does not fit 80 GiB GPUs(.|\n)*dpo.offload_optimizer"):
        check_fits(load_config(path, no_offload), "dpo")
    assert main(["plan", str(path), *no_offload]) == 3
    out = capsys.readouterr().out
    assert "DOES NOT FIT" in out and "llama-3.1-70b" in out
    assert main(["plan", str(path)]) == 0
    assert "fits" in capsys.readouterr().out


def test_cpu_runs_are_not_planned() -> None:
    from temporal_ray.config import load_config
    from temporal_ray.training.plan import check_fits

    check_fits(load_config(ROOT / "configs" / "tiny.yaml", ["model.path=/nowhere"]), "dpo")


def test_training_flops_per_token_by_hand() -> None:
    # TINY: hidden 16, intermediate 32, 2 layers, 4 heads of 4, 2 kv heads, vocab 100.
    q, kv, o, mlp = 16 * 16, 16 * 8, 16 * 16, 3 * 16 * 32
    matmul = 2 * (q + 2 * kv + o + mlp) + 100 * 16
    assert TINY.training_flops_per_token(seq_len=10) == 6 * matmul + 12 * 2 * 4 * 4 * 10
    # Llama-3.1-8B at 2,048 tokens: about 6 * 7.5e9 plus the attention term.
    arch = load_architecture("llama-3.1-8b")
    assert arch.training_flops_per_token(2048) == pytest.approx(
        6 * (arch.total_params - arch.vocab_size * arch.hidden_size - 65 * 4096)
        + 12 * 32 * 4096 * 2048, rel=1e-9)
