"""The DPO objective: per-sequence log-probs of responses and the sigmoid DPO loss.

Pure torch, no DeepSpeed or Ray, so it is tested on hand-worked numbers.

    loss = -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))

where pi_* and ref_* are summed log-probs of the chosen / rejected response tokens under the
policy and the reference (prompt tokens masked out, label -100).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed log-prob of each sequence's labelled tokens.

    logits [B, T, V] predict token t+1 at position t; labels [B, T] hold token ids with
    IGNORE_INDEX on prompt and padding positions. Returns [B].
    """
    logits = logits[:, :-1, :]
    labels = labels[:, 1:]
    mask = labels != IGNORE_INDEX
    safe_labels = labels.masked_fill(~mask, 0)
    token_logps = torch.gather(logits.log_softmax(-1), 2, safe_labels.unsqueeze(-1)).squeeze(-1)
    return (token_logps * mask).sum(-1)


@dataclass
class DPOOutput:
    loss: torch.Tensor
    """Mean loss over the batch (the value to backpropagate)."""
    chosen_rewards: torch.Tensor
    """beta * (pi_c - ref_c) per pair, detached."""
    rejected_rewards: torch.Tensor

    @property
    def margins(self) -> torch.Tensor:
        return self.chosen_rewards - self.rejected_rewards


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
             ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, beta: float) -> DPOOutput:
    """Sigmoid DPO loss (Rafailov et al., 2023) from summed response log-probs."""
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    losses = -F.logsigmoid(beta * (chosen_ratio - rejected_ratio))
    return DPOOutput(
        loss=losses.mean(),
        chosen_rewards=(beta * chosen_ratio).detach(),
        rejected_rewards=(beta * rejected_ratio).detach(),
    )
