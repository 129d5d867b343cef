"""temporal_ray.dpo.loss: summed response log-probs and the sigmoid DPO loss, by hand."""

from __future__ import annotations

import math

import pytest
import torch

from temporal_ray.dpo.loss import IGNORE_INDEX, dpo_loss, sequence_logps


def log_softmax(values: list[float], index: int) -> float:
    return values[index] - math.log(sum(math.exp(v) for v in values))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# Two sequences, T = 3, V = 3. Position t's logits predict the token at t + 1.
LOGITS = torch.tensor([
    [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [5.0, 5.0, 5.0]],
    [[0.0, 1.0, 0.0], [2.0, 0.0, -1.0], [9.0, -9.0, 9.0]],
])
LABELS = torch.tensor([
    [IGNORE_INDEX, 2, 0],              # prompt token, then two response tokens
    [IGNORE_INDEX, IGNORE_INDEX, 1],   # two prompt tokens, one response token
])


def test_sequence_logps_by_hand():
    expected = [
        log_softmax([1, 2, 3], 2) + log_softmax([0, 0, 0], 0),
        log_softmax([2, 0, -1], 1),
    ]
    assert expected[0] == pytest.approx(3 - math.log(math.e + math.e**2 + math.e**3)
                                        - math.log(3))
    result = sequence_logps(LOGITS, LABELS)
    assert result.shape == (2,)
    assert result.tolist() == pytest.approx(expected, abs=1e-6)


def test_sequence_logps_ignores_last_position_and_first_label():
    logits = LOGITS.clone()
    logits[:, -1, :] = torch.tensor([100.0, -100.0, 3.0])  # predicts beyond the sequence
    labels = LABELS.clone()
    labels[:, 0] = 1                                         # no position predicts token 0
    assert sequence_logps(logits, labels).tolist() == \
        pytest.approx(sequence_logps(LOGITS, LABELS).tolist(), abs=1e-6)


def test_sequence_logps_masks_padding():
    labels = torch.tensor([[IGNORE_INDEX, 2, IGNORE_INDEX]])  # response, then padding
    result = sequence_logps(LOGITS[:1], labels)
    assert result.item() == pytest.approx(log_softmax([1, 2, 3], 2), abs=1e-6)


def test_sequence_logps_all_masked_is_zero():
    labels = torch.full((2, 3), IGNORE_INDEX)
    assert sequence_logps(LOGITS, labels).tolist() == [0.0, 0.0]


def test_sequence_logps_is_at_most_zero_and_sums_tokens():
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 5)
    labels = torch.randint(0, 5, (3, 6))
    full = sequence_logps(logits, labels)
    assert (full <= 0).all()
    # Masking positions 1-2 and 3-5 separately splits the sum in two.
    first, second = labels.clone(), labels.clone()
    first[:, 3:] = IGNORE_INDEX
    second[:, :3] = IGNORE_INDEX
    assert torch.allclose(sequence_logps(logits, first) + sequence_logps(logits, second), full)


def pair(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta, grad=False):
    tensors = [torch.tensor([v], dtype=torch.float64, requires_grad=grad)
               for v in (policy_chosen, policy_rejected, ref_chosen, ref_rejected)]
    return tensors, dpo_loss(*tensors, beta=beta)


def test_dpo_loss_hand_worked():
    # ratios: chosen -1 - (-2) = 1, rejected -3 - (-2) = -1; beta * (1 - (-1)) = 1.
    _, out = pair(-1.0, -3.0, -2.0, -2.0, beta=0.5)
    assert out.loss.item() == pytest.approx(-math.log(sigmoid(1.0)))
    assert out.loss.item() == pytest.approx(math.log(1 + math.exp(-1)))
    assert out.chosen_rewards.item() == pytest.approx(0.5)
    assert out.rejected_rewards.item() == pytest.approx(-0.5)
    assert out.margins.item() == pytest.approx(1.0)


def test_dpo_loss_at_zero_margin_is_log_two():
    _, out = pair(-4.0, -6.0, -4.0, -6.0, beta=0.1)
    assert out.loss.item() == pytest.approx(math.log(2))
    assert out.margins.item() == 0.0


def test_dpo_loss_negative_margin():
    # chosen ratio -2, rejected ratio +1, beta 0.1: z = -0.3.
    _, out = pair(-5.0, -2.0, -3.0, -3.0, beta=0.1)
    assert out.loss.item() == pytest.approx(-math.log(sigmoid(-0.3)))
    assert out.chosen_rewards.item() == pytest.approx(-0.2)
    assert out.rejected_rewards.item() == pytest.approx(0.1)
    assert out.margins.item() == pytest.approx(-0.3)
    assert out.loss.item() > math.log(2)


def test_dpo_loss_is_the_batch_mean():
    out = dpo_loss(torch.tensor([-1.0, -4.0]), torch.tensor([-3.0, -6.0]),
                   torch.tensor([-2.0, -4.0]), torch.tensor([-2.0, -6.0]), beta=0.5)
    assert out.loss.item() == pytest.approx((-math.log(sigmoid(1.0)) + math.log(2)) / 2)
    assert out.chosen_rewards.tolist() == pytest.approx([0.5, 0.0])
    assert out.rejected_rewards.tolist() == pytest.approx([-0.5, 0.0])
    assert out.margins.tolist() == pytest.approx([1.0, 0.0])


def test_rewards_are_detached():
    _, out = pair(-1.0, -3.0, -2.0, -2.0, beta=0.5, grad=True)
    assert out.loss.requires_grad
    assert not out.chosen_rewards.requires_grad
    assert not out.rejected_rewards.requires_grad


def test_gradient_signs_and_values():
    (pc, pr, rc, rr), out = pair(-1.0, -3.0, -2.0, -2.0, beta=0.5, grad=True)
    out.loss.backward()
    # d/d pi_c of -log sigmoid(beta * (...)) = -beta * sigmoid(-z), z = 1.
    assert pc.grad.item() == pytest.approx(-0.5 * sigmoid(-1.0))
    assert pr.grad.item() == pytest.approx(0.5 * sigmoid(-1.0))
    assert rc.grad.item() == pytest.approx(0.5 * sigmoid(-1.0))
    assert rr.grad.item() == pytest.approx(-0.5 * sigmoid(-1.0))


def test_loss_decreases_when_chosen_logp_rises_and_rejected_falls():
    base = pair(-1.0, -3.0, -2.0, -2.0, beta=0.5)[1].loss.item()
    assert pair(-0.5, -3.0, -2.0, -2.0, beta=0.5)[1].loss.item() < base
    assert pair(-1.0, -4.0, -2.0, -2.0, beta=0.5)[1].loss.item() < base
    assert pair(-1.5, -3.0, -2.0, -2.0, beta=0.5)[1].loss.item() > base


def test_gradient_through_logits_raises_chosen_token():
    # A gradient step on the loss must raise the chosen response token's logit and lower the
    # rejected one's.
    logits = torch.zeros(2, 2, 3, requires_grad=True)   # rows: chosen, rejected
    labels = torch.tensor([[IGNORE_INDEX, 0], [IGNORE_INDEX, 1]])
    logps = sequence_logps(logits, labels)
    out = dpo_loss(logps[:1], logps[1:], torch.tensor([-1.0]), torch.tensor([-1.0]), beta=0.1)
    out.loss.backward()
    assert logits.grad[0, 0, 0] < 0   # descending the loss increases this logit
    assert logits.grad[1, 0, 1] > 0   # and decreases this one
    assert torch.all(logits.grad[:, 1, :] == 0)  # the last position predicts nothing
