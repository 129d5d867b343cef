"""SFT examples to model inputs: the loss covers response tokens (reading them: tests/inputs/)."""

from __future__ import annotations

import pytest
import torch

from temporal_ray.core.dpo_loss import IGNORE_INDEX
from temporal_ray.core.sft_data import (
    SFTExample,
    collate_examples,
    response_loss,
    tokenize_example,
)


def test_prompt_tokens_are_masked(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    example = tokenize_example(tokenizer, "What is two plus two?", "It is four.", max_length=64)
    response = tokenizer("It is four.", add_special_tokens=False)["input_ids"]
    trained = [label for label in example.labels if label != IGNORE_INDEX]
    assert trained == response + [tokenizer.eos_token_id]
    assert example.response_tokens == len(response) + 1
    assert example.labels[: example.length - len(trained)] == \
        [IGNORE_INDEX] * (example.length - len(trained))


def test_loss_by_hand():
    # Two positions predict: position 0 -> label 1 (masked), position 1 -> label 2 (trained).
    logits = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.0, 2.0], [0.0, 0.0, 0.0]]])
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 2]])
    expected = -torch.log_softmax(torch.tensor([0.0, 0.0, 2.0]), -1)[2]
    assert response_loss(logits, labels).item() == pytest.approx(expected.item())
    ids, mask, padded = collate_examples(
        [SFTExample([5, 6, 7], [IGNORE_INDEX, 6, 7]),
         SFTExample([5], [IGNORE_INDEX])], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [5, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert padded.tolist() == [[IGNORE_INDEX, 6, 7], [IGNORE_INDEX] * 3]
