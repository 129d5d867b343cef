"""Padding-free packing: the same pairs padded ([2B, T]) and packed ([1, N], position ids
restarting per sequence, no attention mask) give the same sequence log-probs, token counts,
DPO loss and gradients on the tiny Llama, to float32 precision; a hand-made row checks the
segment sums."""

from __future__ import annotations

import pytest
import torch

from temporal_ray.core.batching import collate, collate_packed, tokenize_pair
from temporal_ray.core.dpo_loss import IGNORE_INDEX, dpo_loss, packed_sequence_logps, sequence_logps

PAIRS = [("What is 2 + 2?", "4", "I am not sure, maybe five or six or seven."),
         ("Name a colour.", "Blue, like the sky on a clear summer day.", "Dog."),
         ("Reverse the word: king", "gnik", "king")]


def test_packed_row_by_hand():
    # Two sequences [a b c] and [d e]: the prompt tokens a, d are masked.
    log_probs = torch.log(torch.tensor([[0.5, 0.25, 0.25]] * 5))
    labels = torch.tensor([[IGNORE_INDEX, 1, 2, IGNORE_INDEX, 0]])
    segments = torch.tensor([0, 0, 0, 1, 1])
    sums, counts = packed_sequence_logps(log_probs.unsqueeze(0), labels, segments, 2)
    assert counts.tolist() == [2, 1]
    assert sums.tolist() == pytest.approx([2 * torch.log(torch.tensor(0.25)).item(),
                                           torch.log(torch.tensor(0.5)).item()])


def test_packed_equals_padded_on_the_tiny_model(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    pairs = [tokenize_pair(tokenizer, *p, max_length=64) for p in PAIRS]
    n = len(pairs)

    padded = collate(pairs, tokenizer.pad_token_id or 0)
    assert (padded.attention_mask == 0).any()  # the padded batch does pad
    logits = model(input_ids=padded.input_ids, attention_mask=padded.attention_mask).logits
    padded_logps = sequence_logps(logits, padded.labels)
    padded_counts = (padded.labels[:, 1:] != IGNORE_INDEX).sum(-1)

    packed = collate_packed(pairs)
    assert packed.input_ids.shape == (1, int(padded.attention_mask.sum()))
    assert packed.num_pairs == n
    packed_logits = model(input_ids=packed.input_ids, position_ids=packed.position_ids,
                          use_cache=False).logits
    packed_logps, packed_counts = packed_sequence_logps(packed_logits, packed.labels,
                                                        packed.segment_ids, 2 * n)
    assert packed_counts.tolist() == padded_counts.tolist()
    assert torch.allclose(packed_logps, padded_logps, atol=1e-5), (packed_logps, padded_logps)

    # The DPO loss and every gradient agree too.
    reference = (padded_logps[:n].detach() + 0.3, padded_logps[n:].detach() - 0.2)
    grads = []
    for logps in (padded_logps, packed_logps):
        model.zero_grad()
        dpo_loss(logps[:n], logps[n:], *reference, beta=0.1).loss.backward(
            retain_graph=True)
        grads.append({k: p.grad.clone() for k, p in model.named_parameters()})
    for key in grads[0]:
        assert torch.allclose(grads[0][key], grads[1][key], atol=1e-5), key


def test_logits_from_the_responses_start_give_the_same_log_probs(tiny_model):
    """The DPO step asks the model for logits only from `scored_window_start` on
    (`logits_to_keep`): the log-probs and their gradients equal the full forward's."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from temporal_ray.core.dpo_loss import scored_window_start

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    batch = collate([tokenize_pair(tokenizer, *p, max_length=64) for p in PAIRS],
                    tokenizer.pad_token_id or 0)
    start = scored_window_start(batch.labels)
    assert start > 0  # the prompts leave positions to skip
    full = sequence_logps(model(input_ids=batch.input_ids,
                                attention_mask=batch.attention_mask).logits, batch.labels)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                   logits_to_keep=batch.labels.shape[1] - start).logits
    assert logits.shape[1] == batch.labels.shape[1] - start
    windowed = sequence_logps(logits, batch.labels[:, start:])
    assert torch.allclose(windowed, full, atol=1e-5)
    grads = []
    for logps in (full, windowed):
        model.zero_grad()
        logps.sum().backward(retain_graph=True)
        grads.append([p.grad.clone() for p in model.parameters()])
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(*grads))
