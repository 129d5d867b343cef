"""SFT examples to model inputs: tokenise with the loss on response tokens only.

In:  rows {prompt, response, system} (temporal_ray/inputs/load.py reads and checks them; IFT:
     an instruction and its answer; EFT: a judge prompt and a justification ending in
     "Score: k", method.md).
Out: `tokenize_example` gives input ids and labels where the prompt (as the chat template
     renders it, with any system prompt) is masked out.
Pure: knows nothing of Ray, DeepSpeed or models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from temporal_ray.core.batching import encode_prompt_response, prompt_text
from temporal_ray.core.dpo_loss import IGNORE_INDEX


@dataclass
class SFTExample:
    input_ids: list[int]
    labels: list[int]

    @property
    def length(self) -> int:
        return len(self.input_ids)

    @property
    def response_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def tokenize_example(tokenizer: Any, prompt: str, response: str, max_length: int,
                     system: str = "") -> SFTExample:
    """Prompt through the chat template (masked), response + EOS (trained on)."""
    prompt_ids = tokenizer(prompt_text(tokenizer, prompt, system),
                           add_special_tokens=False)["input_ids"]
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + eos
    ids, labels = encode_prompt_response(prompt_ids, response_ids, max_length)
    return SFTExample(ids, labels)


def collate_examples(examples: list[SFTExample], pad_id: int
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad into (input_ids, attention_mask, labels), each [B, T]."""
    width = max(e.length for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        input_ids[i, : e.length] = torch.tensor(e.input_ids)
        labels[i, : e.length] = torch.tensor(e.labels)
        mask[i, : e.length] = 1
    return input_ids, mask, labels


def response_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the response tokens of a batch."""
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1),
        ignore_index=IGNORE_INDEX)
