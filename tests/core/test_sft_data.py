"""SFT data: bad files are refused by file, line and field; the loss covers response tokens."""

from __future__ import annotations

import json

import pytest
import torch

from temporal_ray.core.dpo_loss import IGNORE_INDEX
from temporal_ray.core.prompts import PromptFileError
from temporal_ray.core.sft_data import (
    SFTExample,
    collate_examples,
    load_sft_rows,
    response_loss,
    tokenize_example,
)


def write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_rows_from_several_files_in_order(tmp_path):
    ift = write(tmp_path / "ift.jsonl", [json.dumps({"prompt": "a", "response": "b"})])
    eft = write(tmp_path / "eft.jsonl", [json.dumps({"prompt": "judge", "response": "Score: 4"}),
                                         "", json.dumps({"prompt": "c", "response": "d"})])
    rows = load_sft_rows([ift, eft])
    assert [(r["source"], r["prompt"]) for r in rows] == [(ift, "a"), (eft, "judge"), (eft, "c")]


@pytest.mark.parametrize(("line", "message"), [
    ('{"prompt": "a"}', r"x.jsonl:2: missing field 'response'"),
    ('{"prompt": " ", "response": "b"}', r"x.jsonl:2: field 'prompt' must be a non-empty"),
    ('{"prompt": "a", "response": 3}', r"x.jsonl:2: field 'response' must be a non-empty"),
    ('["a", "b"]', r"x.jsonl:2: expected a JSON object"),
    ('{"prompt": ', r"x.jsonl:2: not valid JSON"),
])
def test_bad_lines_are_named(tmp_path, line, message):
    path = write(tmp_path / "x.jsonl", [json.dumps({"prompt": "ok", "response": "ok"}), line])
    with pytest.raises(PromptFileError, match=message):
        load_sft_rows([path])


def test_missing_empty_and_unset_files(tmp_path):
    with pytest.raises(PromptFileError, match=r"does not exist \(set sft.data\)"):
        load_sft_rows([str(tmp_path / "nope.jsonl")])
    with pytest.raises(PromptFileError, match="holds no examples"):
        load_sft_rows([write(tmp_path / "empty.jsonl", [""])])
    with pytest.raises(PromptFileError, match="set sft.data"):
        load_sft_rows([])


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
