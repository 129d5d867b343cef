"""The DPO objective: per-sequence log-probs of responses and the DPO loss variants.

Pure torch, no DeepSpeed or Ray, so it is tested on hand-worked numbers (and, in
tests/stages/test_dpo_trl_parity.py, against TRL 1.16's DPOTrainer). With pi_* and ref_* the summed
log-probs of the chosen / rejected response tokens under the policy and the reference (prompt
tokens masked out, label -100), Delta = (pi_c - ref_c) - (pi_r - ref_r) and n_* the number of
response tokens:

    sigmoid       -(1 - eps) log sigmoid(beta Delta) - eps log sigmoid(-beta Delta)
    ipo           ((pi_c - ref_c) / n_c - (pi_r - ref_r) / n_r - 1 / (2 beta))^2
    sigmoid_norm  -log sigmoid(beta ((pi_c - ref_c) / n_c - (pi_r - ref_r) / n_r))

each averaged over the batch. eps (label smoothing, conservative DPO) applies to "sigmoid" only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
LOSS_TYPES = ("sigmoid", "ipo", "sigmoid_norm")


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


def scored_window_start(labels: torch.Tensor) -> int:
    """The first position whose logits `sequence_logps` reads: the one before the batch's
    earliest labelled token. Logits before it only predict prompt tokens, so a forward
    pass may skip them (`logits_to_keep`), sparing a vocabulary-sized row per prompt
    position; `sequence_logps(logits[:, s:], labels[:, s:])` is the full result."""
    labelled = (labels != IGNORE_INDEX).any(0).nonzero()
    return max(int(labelled[0]) - 1, 0) if len(labelled) else 0


def packed_sequence_logps(logits: torch.Tensor, labels: torch.Tensor, segment_ids: torch.Tensor,
                          num_sequences: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`sequence_logps` of a packed row: logits [1, N, V], labels [1, N] (IGNORE_INDEX on
    prompts), segment_ids [N]. Returns the summed log-prob and the labelled-token count of
    each sequence, [S] each. A sequence's first token is a prompt token (masked), so no
    prediction across a boundary is counted."""
    logits = logits[0, :-1, :]
    labels = labels[0, 1:]
    segments = segment_ids[1:]
    mask = labels != IGNORE_INDEX
    safe_labels = labels.masked_fill(~mask, 0)
    token_logps = torch.gather(logits.log_softmax(-1), 1, safe_labels.unsqueeze(-1)).squeeze(-1)
    sums = torch.zeros(num_sequences, dtype=token_logps.dtype, device=token_logps.device)
    sums = sums.index_add(0, segments, token_logps * mask)
    counts = torch.zeros(num_sequences, dtype=torch.long, device=labels.device)
    counts = counts.index_add(0, segments, mask.long())
    return sums, counts


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


def _token_counts(name: str, counts: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    if counts is None:
        raise ValueError(f"this loss_type needs {name}: the number of response tokens per sequence")
    counts = torch.as_tensor(counts, device=like.device).to(like.dtype)
    return counts.clamp(min=1.0)  # as TRL: an empty response counts as one token


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
             ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, beta: float,
             loss_type: str = "sigmoid", label_smoothing: float = 0.0,
             chosen_tokens: torch.Tensor | None = None,
             rejected_tokens: torch.Tensor | None = None) -> DPOOutput:
    """DPO loss from summed response log-probs ([B] each); formulas in the module docstring.

    - "sigmoid": DPO (Rafailov et al., 2023); with label_smoothing eps > 0, conservative DPO
      (cDPO, Mitchell 2023). With eps = 0 it is TRL 1.16's loss_type "sigmoid". TRL 1.16's
      "sigmoid" ignores label_smoothing; the cDPO form is the per-pair formula of TRL's "aot"
      loss (identical to it for one pair per batch), not TRL's "robust" (which divides by
      1 - 2 eps and subtracts the flipped term). eps must lie in [0, 0.5).
    - "ipo": TRL 1.16's "ipo" (Azar et al., 2023, beta = tau), with TRL's per-token length
      normalisation of the log-ratios.
    - "sigmoid_norm": TRL 1.16's "sigmoid_norm", the sigmoid loss on per-token log-ratios.

    "ipo" and "sigmoid_norm" need chosen_tokens / rejected_tokens ([B], the number of response
    tokens of each sequence; clamped to at least 1 as TRL does) and reject label_smoothing != 0
    (TRL silently ignores it for them). Rewards are beta * (policy - ref), detached, as TRL logs.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown loss_type {loss_type!r}; valid: {', '.join(LOSS_TYPES)}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must lie in [0, 0.5), got {label_smoothing}")
    if label_smoothing and loss_type != "sigmoid":
        raise ValueError(f"label_smoothing applies to loss_type 'sigmoid' only, not {loss_type!r}")
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    if loss_type == "sigmoid":
        logits = beta * (chosen_ratio - rejected_ratio)
        losses = -F.logsigmoid(logits)
        if label_smoothing:
            losses = (1 - label_smoothing) * losses - label_smoothing * F.logsigmoid(-logits)
    else:
        n_chosen = _token_counts("chosen_tokens", chosen_tokens, chosen_ratio)
        n_rejected = _token_counts("rejected_tokens", rejected_tokens, rejected_ratio)
        delta = chosen_ratio / n_chosen - rejected_ratio / n_rejected
        if loss_type == "ipo":
            losses = (delta - 1 / (2 * beta)) ** 2
        else:
            losses = -F.logsigmoid(beta * delta)
    return DPOOutput(
        loss=losses.mean(),
        chosen_rewards=(beta * chosen_ratio).detach(),
        rejected_rewards=(beta * rejected_ratio).detach(),
    )
