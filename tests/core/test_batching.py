"""temporal_ray.core.batching: tokenising pairs, masking prompts, padding, sharding."""

from __future__ import annotations

import pytest
import torch

from temporal_ray.core.batching import (
    TokenizedPair,
    collate,
    encode_prompt_response,
    pair_tokens,
    prompt_text,
    random_micro_batches,
    shard_indices,
    shard_tokens,
    tokenize_pair,
)
from temporal_ray.core.dpo_loss import IGNORE_INDEX
from temporal_ray.miniature.tiny_model import build_tokenizer

M = IGNORE_INDEX  # a masked label


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# ----------------------------------------------------------------- encode_prompt_response


def test_encode_fits():
    ids, labels = encode_prompt_response([1, 2, 3], [4, 5], max_length=10)
    assert ids == [1, 2, 3, 4, 5]
    assert labels == [M, M, M, 4, 5]


def test_encode_cuts_the_response_tail():
    ids, labels = encode_prompt_response([1, 2, 3], [4, 5, 6, 7], max_length=5)
    assert ids == [1, 2, 3, 4, 5]
    assert labels == [M, M, M, 4, 5]


def test_encode_prompt_filling_the_budget_keeps_one_response_token():
    ids, labels = encode_prompt_response([1, 2, 3, 4], [7, 8], max_length=4)
    assert ids == [2, 3, 4, 7]
    assert labels == [M, M, M, 7]


def test_encode_long_prompt_keeps_its_last_tokens():
    ids, labels = encode_prompt_response([1, 2, 3, 4, 5, 6], [7, 8], max_length=4)
    assert ids == [4, 5, 6, 7]
    assert labels == [M, M, M, 7]


def test_encode_max_length_two():
    assert encode_prompt_response([1, 2, 3], [7, 8], max_length=2) == ([3, 7], [M, 7])


@pytest.mark.parametrize("max_length", range(2, 12))
@pytest.mark.parametrize("prompt_len, response_len", [(1, 1), (3, 4), (6, 2), (9, 9)])
def test_encode_invariants(max_length, prompt_len, response_len):
    prompt = list(range(100, 100 + prompt_len))
    response = list(range(200, 200 + response_len))
    ids, labels = encode_prompt_response(prompt, response, max_length)
    assert len(ids) == len(labels) == min(max_length, prompt_len + response_len)
    kept_prompt = [t for t, lab in zip(ids, labels, strict=True) if lab == M]
    kept_response = [lab for lab in labels if lab != M]
    # The prompt (or its tail) comes first, unlabelled; the response head follows, labelled.
    assert ids == kept_prompt + kept_response
    assert kept_prompt == prompt[len(prompt) - len(kept_prompt):]
    assert kept_response == response[: len(kept_response)]
    assert len(kept_response) >= 1
    if prompt_len < max_length:
        assert kept_prompt == prompt   # the whole prompt is kept when it fits


def test_encode_keeps_one_prompt_and_one_response_token_at_the_smallest_length():
    ids, labels = encode_prompt_response([1, 2, 3], [7, 8], max_length=2)
    assert ids == [3, 7]
    assert labels == [IGNORE_INDEX, 7]


def test_config_refuses_a_max_length_too_small_to_train_on():
    from pydantic import ValidationError

    from temporal_ray.config import DPOConfig

    with pytest.raises(ValidationError, match="max_length"):
        DPOConfig(max_length=1)


# --------------------------------------------------------------------------- tokenize_pair


def test_prompt_text_uses_chat_template(tokenizer):
    assert prompt_text(tokenizer, "Hi there?") == "<|user|>\nHi there?<|end|>\n<|assistant|>\n"


def test_tokenize_pair_masks_prompt_and_ends_with_eos(tokenizer):
    prompt, chosen, rejected = "Name a colour.", "Blue is a colour.", "No."
    pair = tokenize_pair(tokenizer, prompt, chosen, rejected, max_length=512)
    prompt_ids = encode(tokenizer, prompt_text(tokenizer, prompt))
    eos = tokenizer.eos_token_id
    assert eos is not None
    for ids, labels, text in [(pair.chosen_ids, pair.chosen_labels, chosen),
                              (pair.rejected_ids, pair.rejected_labels, rejected)]:
        response_ids = encode(tokenizer, text) + [eos]
        assert ids == prompt_ids + response_ids
        assert labels == [M] * len(prompt_ids) + response_ids
        assert tokenizer.decode([t for t in labels if t != M], skip_special_tokens=True) == text
    assert pair.chosen_ids[: len(prompt_ids)] == pair.rejected_ids[: len(prompt_ids)]
    assert pair.chosen_ids != pair.rejected_ids


def test_tokenize_pair_truncation(tokenizer):
    prompt = "Explain why the sky looks blue on a clear day."
    long_response = "The sky looks blue because air scatters blue light more. " * 20
    prompt_len = len(encode(tokenizer, prompt_text(tokenizer, prompt)))
    max_length = prompt_len + 5
    pair = tokenize_pair(tokenizer, prompt, long_response, "Short.", max_length=max_length)
    assert len(pair.chosen_ids) == max_length
    assert pair.chosen_labels[:prompt_len] == [M] * prompt_len
    assert sum(lab != M for lab in pair.chosen_labels) == 5
    assert pair.chosen_ids[-1] != tokenizer.eos_token_id   # the response tail was cut
    assert len(pair.rejected_ids) <= max_length


def test_tokenize_pair_prompt_longer_than_max_length(tokenizer):
    prompt = "Give one tip for keeping a garden healthy in summer. " * 10
    pair = tokenize_pair(tokenizer, prompt, "Water early.", "Nothing.", max_length=16)
    for ids, labels in [(pair.chosen_ids, pair.chosen_labels),
                        (pair.rejected_ids, pair.rejected_labels)]:
        assert len(ids) == 16
        assert labels[:15] == [M] * 15
        assert labels[15] == ids[15] != M
    # The prompt's tail is kept: the assistant turn marker sits right before the response.
    prompt_ids = encode(tokenizer, prompt_text(tokenizer, prompt))
    assert pair.chosen_ids[:15] == prompt_ids[-15:]
    assert tokenizer.decode(pair.chosen_ids[:15]).endswith("<|assistant|>\n")


# --------------------------------------------------------------------------------- collate


def test_collate_shapes_order_and_masks():
    pairs = [
        TokenizedPair([1, 2, 3], [M, 2, 3], [1, 2], [M, 9]),
        TokenizedPair([4, 5], [M, 5], [4, 6, 7, 8], [M, 6, 7, 8]),
    ]
    batch = collate(pairs, pad_id=0)
    assert batch.num_pairs == 2
    assert batch.input_ids.shape == batch.labels.shape == batch.attention_mask.shape == (4, 4)
    assert batch.input_ids.dtype == batch.labels.dtype == torch.long
    # Chosen rows first, then rejected, each right-padded.
    assert batch.input_ids.tolist() == [[1, 2, 3, 0], [4, 5, 0, 0],
                                        [1, 2, 0, 0], [4, 6, 7, 8]]
    assert batch.labels.tolist() == [[M, 2, 3, M], [M, 5, M, M],
                                     [M, 9, M, M], [M, 6, 7, 8]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 0], [1, 1, 0, 0],
                                             [1, 1, 0, 0], [1, 1, 1, 1]]


def test_collate_pad_id_never_labelled():
    batch = collate([TokenizedPair([5], [M], [5, 6, 7], [M, 6, 7])], pad_id=7)
    assert batch.input_ids.tolist() == [[5, 7, 7], [5, 6, 7]]
    assert batch.labels.tolist() == [[M, M, M], [M, 6, 7]]   # the real 7 is labelled
    assert (batch.labels[batch.attention_mask == 0] == M).all()


def test_collate_tokenized_pairs(tokenizer):
    pairs = [tokenize_pair(tokenizer, "Name a colour.", "Red.", "M do not know any colours.",
                           max_length=64),
             tokenize_pair(tokenizer, "Say hi.", "Hello there, friend!", "No.", max_length=64)]
    batch = collate(pairs, tokenizer.pad_token_id)
    width = max(len(ids) for p in pairs for ids in (p.chosen_ids, p.rejected_ids))
    assert batch.input_ids.shape == (4, width)
    rows = [p.chosen_ids for p in pairs] + [p.rejected_ids for p in pairs]
    for i, ids in enumerate(rows):
        assert batch.input_ids[i, : len(ids)].tolist() == ids
        assert batch.attention_mask[i].sum().item() == len(ids)
        assert (batch.input_ids[i, len(ids):] == tokenizer.pad_token_id).all()


# ---------------------------------------------------------------------------- shard_indices


def test_shard_indices_hand_worked():
    # 5 items, 2 ranks, 2 per step: padded to 8 = [0, 1, 2, 3, 4, 0, 1, 2], dealt round-robin.
    assert shard_indices(5, 0, 2, 2) == [0, 2, 4, 1]
    assert shard_indices(5, 1, 2, 2) == [1, 3, 0, 2]


def test_shard_indices_exact_multiple_has_no_padding():
    shards = [shard_indices(8, rank, 2, 2) for rank in range(2)]
    assert shards == [[0, 2, 4, 6], [1, 3, 5, 7]]


@pytest.mark.parametrize("num_items, world_size, per_step", [
    (5, 2, 2), (8, 2, 2), (7, 3, 1), (1, 4, 1), (10, 4, 3), (33, 2, 16), (2, 1, 5)])
def test_shard_indices_invariants(num_items, world_size, per_step):
    shards = [shard_indices(num_items, rank, world_size, per_step)
              for rank in range(world_size)]
    lengths = {len(shard) for shard in shards}
    assert len(lengths) == 1                         # every rank runs the same steps
    length = lengths.pop()
    assert length % per_step == 0
    assert length * world_size >= num_items
    assert length * world_size - num_items < world_size * per_step   # minimal padding
    flat = [i for shard in shards for i in shard]
    assert set(flat) == set(range(num_items))        # every index is covered
    # Padding wraps around: the extra items are the first ones again.
    padded_total = length * world_size
    expected = sorted(i % num_items for i in range(padded_total))
    assert sorted(flat) == expected


def test_shard_indices_empty():
    assert shard_indices(0, 0, 2, 2) == []
    assert shard_indices(0, 1, 2, 2) == []


def test_random_micro_batches_mix_lengths_and_keep_every_item():
    indices = list(range(40))  # 0-19 short, 20-39 long: buckets would never mix them
    batches = random_micro_batches(indices, 8, seed=3)
    assert batches == random_micro_batches(indices, 8, seed=3)
    assert batches != random_micro_batches(indices, 8, seed=4)
    assert sorted(i for b in batches for i in b) == indices and [len(b) for b in batches] == [8] * 5
    assert sum(any(i < 20 for i in b) and any(i >= 20 for i in b) for b in batches) >= 3
    assert random_micro_batches([5, 5, 6], 2, seed=0) in ([[5, 5], [6]], [[5, 6], [5]])


# ----------------------------------------------------------------------------- shard_tokens


def test_pair_tokens_count_inputs_and_the_labels_the_loss_reads():
    # Chosen: 3 prompt + 2 response tokens; rejected: 3 prompt + 3 response tokens.
    pair = TokenizedPair([1, 2, 3, 4, 5], [M, M, M, 4, 5], [1, 2, 3, 6, 7, 8], [M, M, M, 6, 7, 8])
    assert pair_tokens(pair) == (11, 5)
    # A response label at position 0 is never scored (nothing predicts it).
    assert pair_tokens(TokenizedPair([9, 4], [9, 4], [9], [9])) == (3, 1)


def test_shard_tokens_sums_micro_batches_and_passes():
    sizes = [(10, 4), (20, 5), (30, 6)]
    # Item 0 twice: shard_indices wrapped around, so it is computed twice.
    assert shard_tokens(sizes, [[0, 2], [0]]) == (50, 14)
    assert shard_tokens(sizes, [[0, 2], [0]], passes=3) == (150, 42)
    assert shard_tokens(sizes, []) == (0, 0)


def test_shard_tokens_over_every_rank_count_each_item_of_the_epoch(tokenizer):
    pairs = [tokenize_pair(tokenizer, f"Add {i} and {i}.", f"{2 * i}", "I like trains.", 64)
             for i in range(5)]
    sizes = [pair_tokens(p) for p in pairs]
    per_rank = [shard_tokens(sizes, random_micro_batches(
        shard_indices(len(pairs), rank, 2, 2), 2, seed=rank)) for rank in range(2)]
    # 5 items padded to 8 over 2 ranks x 2 per step: items 0, 1 and 2 run twice.
    wrapped = [sizes[i % 5] for i in range(8)]
    assert sum(f for f, _ in per_rank) == sum(f for f, _ in wrapped)
    assert sum(b for _, b in per_rank) == sum(b for _, b in wrapped)
    assert all(0 < b < f for f, b in per_rank)
