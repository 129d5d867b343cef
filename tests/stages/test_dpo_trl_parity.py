"""temporal_ray.core.dpo_loss against TRL's DPOTrainer, on a tiny model and one real TRL batch.

TRL builds the batch (tokenisation, chat template, padding, completion_mask, chosen rows then
rejected rows) and computes its loss through its own code path: `DPOTrainer.compute_loss`,
with the model's forward patched by TRL (`add_fused_lm_head`) to return per-token log-probs
from a chunked log-softmax kernel. We then take the SAME batch tensors, run an unpatched copy
of the same weights, and compute `sequence_logps` on the full logits and `dpo_loss`. Log-probs,
loss, logged rewards and every parameter gradient must agree to 1e-5.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("trl")
pytest.importorskip("datasets")

from temporal_ray.core.dpo_loss import IGNORE_INDEX, dpo_loss, sequence_logps  # noqa: E402

TOL = 1e-5
BETA = 0.1
NON_MODEL_KEYS = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps"}

# Different response lengths, so chosen/rejected token counts differ both ways and the
# per-token normalisation of "ipo" / "sigmoid_norm" matters; padding appears in the batch.
PAIRS = [
    ("What is the capital of France?", "Paris is the capital.",
     "I think it might be Lyon, a large city in the south."),
    ("Name a colour.", "Blue, like the sky on a clear summer day.", "Dog."),
]


def conversational(pairs):
    import datasets

    return datasets.Dataset.from_list([
        {"prompt": [{"role": "user", "content": prompt}],
         "chosen": [{"role": "assistant", "content": chosen}],
         "rejected": [{"role": "assistant", "content": rejected}]}
        for prompt, chosen, rejected in pairs
    ])


def load(path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.train()
    return model


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The matrices are tiny: one thread is faster, and far faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dirs(tiny_model, tmp_path_factory):
    """(policy, reference) directories: a slightly perturbed copy of the tiny model (from
    `temporal_ray.miniature.tiny_model.build_tiny_model`, see conftest) and the tiny model
    itself, so that the policy/reference log-ratios are not zero."""
    ref_dir = tiny_model
    policy = load(ref_dir)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in policy.parameters():
            param.add_(0.02 * torch.randn(param.shape, generator=generator))
    policy_dir = tmp_path_factory.mktemp("policy")
    policy.save_pretrained(policy_dir)
    return policy_dir, ref_dir


def trl_step(model_dirs, out_dir, loss_type, label_smoothing, batch_size):
    """One real TRL batch and TRL's loss, grads, per-sequence log-probs and logged metrics."""
    import trl
    from transformers import AutoTokenizer

    policy_dir, ref_dir = model_dirs
    args = trl.DPOConfig(
        output_dir=str(out_dir), report_to=[], per_device_train_batch_size=batch_size,
        beta=BETA, loss_type=[loss_type], label_smoothing=label_smoothing, use_cpu=True,
        max_length=256, bf16=False, fp16=False,
    )
    trainer = trl.DPOTrainer(
        model=load(policy_dir), ref_model=load(ref_dir), args=args,
        train_dataset=conversational(PAIRS),
        processing_class=AutoTokenizer.from_pretrained(ref_dir),
    )
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in trainer.model.named_parameters()}
    metrics = {key: values[-1] for key, values in trainer._metrics["train"].items()}

    # Per-sequence log-probs through TRL's patched forward, exactly as _compute_loss calls it.
    kwargs = {k: v for k, v in batch.items() if k not in NON_MODEL_KEYS}
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    with torch.no_grad():
        logps = trainer.model(**kwargs, labels=labels, use_cache=False,
                              fused_lm_head=True).log_probs.sum(1)
        ref_logps = trainer.ref_model(**kwargs, labels=labels, use_cache=False,
                                      fused_lm_head=True).log_probs.sum(1)
    return trainer, batch, loss.detach(), grads, logps, ref_logps, metrics


def our_step(model_dirs, batch, loss_type, label_smoothing):
    """Our loss on the same batch tensors, with fresh unpatched copies of the same weights."""
    policy_dir, ref_dir = model_dirs
    policy, ref = load(policy_dir), load(ref_dir)
    kwargs = {k: v for k, v in batch.items() if k not in NON_MODEL_KEYS}
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, IGNORE_INDEX)
    logps = sequence_logps(policy(**kwargs, use_cache=False).logits, labels)
    with torch.no_grad():
        ref_logps = sequence_logps(ref(**kwargs, use_cache=False).logits, labels)
    chosen, rejected = logps.chunk(2)            # TRL stacks [chosen rows; rejected rows]
    ref_chosen, ref_rejected = ref_logps.chunk(2)
    tokens_chosen, tokens_rejected = batch["completion_mask"].sum(1).chunk(2)
    out = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, BETA, loss_type=loss_type,
                   label_smoothing=label_smoothing, chosen_tokens=tokens_chosen,
                   rejected_tokens=tokens_rejected)
    out.loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in policy.named_parameters()}
    return out, grads, logps.detach(), ref_logps


def fp32_spacing(values) -> float:
    """The gap between adjacent float32 numbers at the largest |value|: 1.5e-5 from 128 to 256.
    Summed log-probs of that size cannot agree to 1e-5 when their sums round differently."""
    largest = torch.as_tensor(values, dtype=torch.float32).abs().max()
    return (torch.nextafter(largest, torch.tensor(float("inf"))) - largest).item()


def max_diff(a, b) -> float:
    return (torch.as_tensor(a, dtype=torch.float64) - torch.as_tensor(b, dtype=torch.float64)) \
        .abs().max().item()


CASES = [
    # (ours: loss_type, label_smoothing), (TRL: loss_type, label_smoothing, pairs per batch)
    pytest.param(("sigmoid", 0.0), ("sigmoid", 0.0, 2), id="sigmoid"),
    pytest.param(("ipo", 0.0), ("ipo", 0.0, 2), id="ipo"),
    pytest.param(("sigmoid_norm", 0.0), ("sigmoid_norm", 0.0, 2), id="sigmoid_norm"),
    # TRL 1.16's "sigmoid" ignores label_smoothing: it is plain DPO whatever the value.
    pytest.param(("sigmoid", 0.0), ("sigmoid", 0.1, 2), id="trl-sigmoid-ignores-smoothing"),
    # cDPO: TRL 1.16 has it only as the per-pair formula of "aot", which sorts the log-ratios
    # across the batch; with one pair per batch the sort is the identity and "aot" is cDPO.
    pytest.param(("sigmoid", 0.1), ("aot", 0.1, 1), id="cdpo-vs-trl-aot-one-pair"),
]


@pytest.mark.parametrize(("ours", "theirs"), CASES)
def test_matches_trl(model_dirs, tmp_path, ours, theirs):
    trl_loss_type, trl_smoothing, batch_size = theirs
    trainer, batch, trl_loss, trl_grads, trl_logps, trl_ref_logps, metrics = trl_step(
        model_dirs, tmp_path, trl_loss_type, trl_smoothing, batch_size)

    # The batch really is [chosen rows; rejected rows] of the same pairs, with prompt masked.
    tokenizer = trainer.processing_class
    ids, mask = batch["input_ids"], batch["completion_mask"]
    assert ids.shape[0] == 2 * batch_size
    by_chosen = {chosen: rejected for _, chosen, rejected in PAIRS}
    for row in range(batch_size):
        chosen = tokenizer.decode(ids[row][mask[row].bool()])
        rejected = tokenizer.decode(ids[row + batch_size][mask[row + batch_size].bool()])
        text = next(c for c in by_chosen if c in chosen)
        assert by_chosen[text] in rejected
    assert mask[:, 0].sum() == 0  # the first token is never a completion token

    out, our_grads, our_logps, our_ref_logps = our_step(model_dirs, batch, *ours)

    diffs = {
        "logps": max_diff(our_logps, trl_logps),
        "ref_logps": max_diff(our_ref_logps, trl_ref_logps),
        "loss": max_diff(out.loss.detach(), trl_loss),
        "grads": max(max_diff(our_grads[name], grad) for name, grad in trl_grads.items()),
        "rewards/chosen": abs(out.chosen_rewards.mean().item() - metrics["rewards/chosen"]),
        "rewards/rejected": abs(out.rejected_rewards.mean().item() - metrics["rewards/rejected"]),
        "rewards/margins": abs(out.margins.mean().item() - metrics["rewards/margins"]),
    }
    print(f"\n{ours} vs TRL {theirs}: loss {trl_loss.item():.6f}, max |diff| {diffs}")
    # 1e-5 everywhere, except that a sequence log-prob sum may differ by one float32 step of
    # its own size (TRL sums chunked log-softmax outputs, we sum the full one).
    tolerance = {"logps": max(TOL, fp32_spacing(trl_logps)),
                 "ref_logps": max(TOL, fp32_spacing(trl_ref_logps))}
    assert all(value <= tolerance.get(key, TOL) for key, value in diffs.items()), diffs

    # The comparison is not vacuous: nonzero log-ratios and gradients on the head and embedding.
    assert (our_logps - our_ref_logps).abs().min() > 1e-2
    assert set(our_grads) == set(trl_grads)
    for name in ("lm_head.weight", "model.embed_tokens.weight"):
        assert trl_grads[name].abs().max() > 1e-4
