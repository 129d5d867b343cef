"""Pair rows to model inputs: tokenise prompt + response, mask the prompt, pad.

In:  pair rows {prompt, chosen, rejected} and a tokenizer with a chat template.
Out: `PairBatch` tensors with chosen and rejected stacked in one batch ([2B, T]: the first B
     rows chosen, the last B rejected), so one forward pass serves both; or, padding-free,
     `PackedBatch`: the same 2B sequences back to back in one row (`collate_packed`).
Knows nothing of the model, DeepSpeed or Ray.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch

from temporal_ray.core.dpo_loss import IGNORE_INDEX
from temporal_ray.core.rows import chat_messages


@dataclass
class TokenizedPair:
    chosen_ids: list[int]
    chosen_labels: list[int]
    rejected_ids: list[int]
    rejected_labels: list[int]

    @property
    def length(self) -> int:
        """The padded width this pair needs in a batch."""
        return max(len(self.chosen_ids), len(self.rejected_ids))


@dataclass
class PairBatch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    @property
    def num_pairs(self) -> int:
        return self.input_ids.shape[0] // 2


def prompt_text(tokenizer: Any, prompt: str, system: str = "") -> str:
    """The prompt as the model sees it at generation time (chat template, assistant turn open)."""
    return tokenizer.apply_chat_template(
        chat_messages(prompt, system), tokenize=False, add_generation_prompt=True)


def encode_prompt_response(prompt_ids: list[int], response_ids: list[int],
                           max_length: int) -> tuple[list[int], list[int]]:
    """Prompt + response ids and labels (the prompt masked), within max_length."""
    # Keep the whole prompt where possible and cut the response tail; a prompt that alone is
    # too long keeps its last tokens so that at least one response token remains.
    max_length = max(max_length, 2)
    prompt_ids = prompt_ids[-(max_length - 1):]
    response_ids = response_ids[: max_length - len(prompt_ids)]
    ids = prompt_ids + response_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + response_ids
    return ids, labels


def tokenize_pair(tokenizer: Any, prompt: str, chosen: str, rejected: str,
                  max_length: int, system: str = "") -> TokenizedPair:
    prompt_ids = tokenizer(prompt_text(tokenizer, prompt, system),
                           add_special_tokens=False)["input_ids"]
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []

    def response(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"] + eos

    c_ids, c_labels = encode_prompt_response(prompt_ids, response(chosen), max_length)
    r_ids, r_labels = encode_prompt_response(prompt_ids, response(rejected), max_length)
    return TokenizedPair(c_ids, c_labels, r_ids, r_labels)


def collate(pairs: list[TokenizedPair], pad_id: int) -> PairBatch:
    """Right-pad chosen then rejected sequences into one [2B, T] batch."""
    seqs = [(p.chosen_ids, p.chosen_labels) for p in pairs] + \
           [(p.rejected_ids, p.rejected_labels) for p in pairs]
    width = max(len(ids) for ids, _ in seqs)
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (ids, labs) in enumerate(seqs):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(labs)] = torch.tensor(labs)
        mask[i, : len(ids)] = 1
    return PairBatch(input_ids, mask, labels)


@dataclass
class PackedBatch:
    """A micro-batch without padding: every sequence (chosen ones first, then rejected) back
    to back in one row, position ids restarting at 0 for each. Given position ids, no
    attention mask and `use_cache=False`, transformers' attention (sdpa, eager, flash) keeps
    each sequence to itself with a block-diagonal causal mask (Llama, Qwen2, Mistral)."""

    input_ids: torch.Tensor
    """[1, N]: N = the summed lengths, no pad token anywhere."""
    position_ids: torch.Tensor
    labels: torch.Tensor
    segment_ids: torch.Tensor
    """[N]: which sequence each token belongs to, 0..2B-1."""

    @property
    def num_pairs(self) -> int:
        return int(self.segment_ids[-1]) // 2 + 1


def collate_packed(pairs: list[TokenizedPair]) -> PackedBatch:
    """Chosen then rejected sequences packed into one [1, N] row."""
    seqs = [(p.chosen_ids, p.chosen_labels) for p in pairs] + \
           [(p.rejected_ids, p.rejected_labels) for p in pairs]
    ids = [t for seq, _ in seqs for t in seq]
    labels = [t for _, labs in seqs for t in labs]
    positions = [i for seq, _ in seqs for i in range(len(seq))]
    segments = [k for k, (seq, _) in enumerate(seqs) for _ in seq]
    return PackedBatch(torch.tensor([ids]), torch.tensor([positions]), torch.tensor([labels]),
                       torch.tensor(segments))


def shard_indices(num_items: int, rank: int, world_size: int, per_step: int) -> list[int]:
    """This rank's item indices. The list is padded by wrapping around to a multiple of
    world_size * per_step so every rank runs the same number of forward passes (ZeRO-3 needs
    all ranks in every collective)."""
    chunk = world_size * per_step
    total = -(-num_items // chunk) * chunk
    padded = [i % num_items for i in range(total)]
    return padded[rank::world_size]


def random_micro_batches(indices: list[int], micro_batch_size: int, seed: int
                         ) -> list[list[int]]:
    """Cut a rank's items into micro-batches in a seeded random order, whatever their lengths:
    each micro-batch is a sample of the whole mix (IFT and EFT rows, short and long tasks)."""
    order = list(indices)
    random.Random(seed).shuffle(order)
    return [order[i: i + micro_batch_size] for i in range(0, len(order), micro_batch_size)]


def bucket_by_length(indices: list[int], lengths: list[int], micro_batch_size: int
                     ) -> list[list[int]]:
    """Cut a rank's items into micro-batches of similar length (sorted, longest first), so a
    micro-batch pads to little more than its own items. The loop shuffles the micro-batch
    order, so training does not see lengths in order."""
    ordered = sorted(indices, key=lambda i: (-lengths[i], i))
    return [ordered[i: i + micro_batch_size] for i in range(0, len(ordered), micro_batch_size)]


def pair_tokens(pair: TokenizedPair) -> tuple[int, int]:
    """A pair's (input, scored) tokens: every prompt and response token of chosen and rejected
    (no padding), and the response tokens whose log-probs the loss sums (labels shifted by
    one, as `sequence_logps` reads them)."""
    def scored(labels: list[int]) -> int:
        return sum(label != IGNORE_INDEX for label in labels[1:])

    return (len(pair.chosen_ids) + len(pair.rejected_ids),
            scored(pair.chosen_labels) + scored(pair.rejected_labels))


def shard_tokens(sizes: list[tuple[int, int]], micro_batches: list[list[int]],
                 passes: int = 1) -> tuple[int, int]:
    """(input, scored) tokens of `passes` passes over one rank's micro-batches, `sizes[i]`
    being item i's (input, scored) tokens (`pair_tokens`). An item that the rank's share
    repeats (`shard_indices` wraps around) counts each time: it is computed each time."""
    items = [i for batch in micro_batches for i in batch]
    return (passes * sum(sizes[i][0] for i in items),
            passes * sum(sizes[i][1] for i in items))
