"""temporal_ray.core.dpo_loss: summed response log-probs and the DPO loss variants, by hand."""

from __future__ import annotations

import math

import pytest
import torch

from temporal_ray.core.dpo_loss import IGNORE_INDEX, dpo_loss, scored_window_start, sequence_logps


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


# ------------------------------------------------------------------ loss variants

def test_label_smoothing_is_conservative_dpo():
    # z = beta * Delta = 1, eps = 0.1: -(1 - eps) log sigmoid(z) - eps log sigmoid(-z).
    tensors = [torch.tensor([v], dtype=torch.float64, requires_grad=True)
               for v in (-1.0, -3.0, -2.0, -2.0)]
    out = dpo_loss(*tensors, beta=0.5, label_smoothing=0.1)
    expected = -0.9 * math.log(sigmoid(1.0)) - 0.1 * math.log(sigmoid(-1.0))
    assert out.loss.item() == pytest.approx(expected)
    assert out.loss.item() == pytest.approx(-math.log(sigmoid(1.0)) + 0.1 * 1.0)  # + eps * z
    assert out.chosen_rewards.item() == pytest.approx(0.5)      # rewards are not smoothed
    assert out.rejected_rewards.item() == pytest.approx(-0.5)
    out.loss.backward()
    # d/d pi_c = beta * (-(1 - eps) sigmoid(-z) + eps sigmoid(z))
    assert tensors[0].grad.item() == pytest.approx(0.5 * (-0.9 * sigmoid(-1.0)
                                                          + 0.1 * sigmoid(1.0)))


def test_label_smoothing_zero_is_plain_dpo():
    tensors, plain = pair(-1.0, -3.0, -2.0, -2.0, beta=0.5)
    assert dpo_loss(*tensors, beta=0.5, label_smoothing=0.0).loss.item() == plain.loss.item()


def test_label_smoothing_stops_pushing_at_its_optimum():
    # cDPO's gradient vanishes at z = log((1 - eps) / eps): with eps = 0.2, z = log 4.
    eps, z = 0.2, math.log(4.0)
    policy_chosen = torch.tensor([z], dtype=torch.float64, requires_grad=True)
    zero = torch.zeros(1, dtype=torch.float64)
    out = dpo_loss(policy_chosen, zero, zero, zero, beta=1.0, label_smoothing=eps)
    out.loss.backward()
    assert policy_chosen.grad.item() == pytest.approx(0.0, abs=1e-12)
    assert out.loss.item() == pytest.approx(-0.8 * math.log(0.8) - 0.2 * math.log(0.2))


def variant(loss_type, beta=0.5, chosen_tokens=(2,), rejected_tokens=(4,), grad=False):
    # chosen ratio -1 - (-2) = 1, rejected ratio -3 - (-2) = -1, as in test_dpo_loss_hand_worked.
    tensors = [torch.tensor([v], dtype=torch.float64, requires_grad=grad)
               for v in (-1.0, -3.0, -2.0, -2.0)]
    out = dpo_loss(*tensors, beta=beta, loss_type=loss_type,
                   chosen_tokens=torch.tensor(chosen_tokens),
                   rejected_tokens=torch.tensor(rejected_tokens))
    return tensors, out


def test_ipo_hand_worked():
    # Per-token ratios 1 / 2 and -1 / 4: delta = 0.75; 1 / (2 beta) = 1; loss (0.75 - 1)^2.
    (pc, pr, rc, rr), out = variant("ipo", grad=True)
    assert out.loss.item() == pytest.approx(0.0625)
    assert out.chosen_rewards.item() == pytest.approx(0.5)     # rewards are not normalised
    assert out.rejected_rewards.item() == pytest.approx(-0.5)
    out.loss.backward()
    # d/d pi_c = 2 (delta - 1) / n_c, d/d pi_r = -2 (delta - 1) / n_r
    assert pc.grad.item() == pytest.approx(2 * -0.25 / 2)
    assert pr.grad.item() == pytest.approx(-2 * -0.25 / 4)
    assert rc.grad.item() == pytest.approx(-pc.grad.item())
    assert rr.grad.item() == pytest.approx(-pr.grad.item())


def test_ipo_beta_sets_the_target_margin():
    # beta = 0.1: target 1 / (2 beta) = 5 per token; delta = 0.75, loss (0.75 - 5)^2.
    _, out = variant("ipo", beta=0.1)
    assert out.loss.item() == pytest.approx(4.25 ** 2)
    # Overshooting the target is penalised too: beta = 2, target 0.25, loss 0.5^2.
    _, out = variant("ipo", beta=2.0)
    assert out.loss.item() == pytest.approx(0.25)


def test_ipo_batch_mean_with_per_row_token_counts():
    out = dpo_loss(torch.tensor([-1.0, -4.0]), torch.tensor([-3.0, -6.0]),
                   torch.tensor([-2.0, -4.0]), torch.tensor([-2.0, -6.0]), beta=0.5,
                   loss_type="ipo", chosen_tokens=torch.tensor([2, 3]),
                   rejected_tokens=torch.tensor([4, 5]))
    # Row 0: delta 0.75 -> 0.0625. Row 1: both ratios 0 -> (0 - 1)^2 = 1.
    assert out.loss.item() == pytest.approx((0.0625 + 1.0) / 2)


def test_sigmoid_norm_hand_worked():
    # delta = 1 / 2 - (-1 / 4) = 0.75; loss -log sigmoid(beta * 0.75).
    (pc, pr, _, _), out = variant("sigmoid_norm", grad=True)
    assert out.loss.item() == pytest.approx(-math.log(sigmoid(0.375)))
    assert out.chosen_rewards.item() == pytest.approx(0.5)
    out.loss.backward()
    assert pc.grad.item() == pytest.approx(-0.5 * sigmoid(-0.375) / 2)
    assert pr.grad.item() == pytest.approx(0.5 * sigmoid(-0.375) / 4)


def test_sigmoid_norm_with_equal_lengths_is_sigmoid_with_beta_over_n():
    _, norm = variant("sigmoid_norm", beta=0.5, chosen_tokens=(4,), rejected_tokens=(4,))
    _, plain = pair(-1.0, -3.0, -2.0, -2.0, beta=0.5 / 4)
    assert norm.loss.item() == pytest.approx(plain.loss.item())
    assert norm.loss.item() == pytest.approx(-math.log(sigmoid(0.25)))


def test_zero_token_counts_count_as_one():
    # As TRL (completion_mask.sum().clamp(min=1)): an empty response divides by 1, not 0.
    _, zero = variant("ipo", chosen_tokens=(0,), rejected_tokens=(0,))
    _, one = variant("ipo", chosen_tokens=(1,), rejected_tokens=(1,))
    assert zero.loss.item() == one.loss.item() == pytest.approx((2.0 - 1.0) ** 2)


def test_sigmoid_ignores_token_counts():
    _, with_counts = variant("sigmoid")
    assert with_counts.loss.item() == pytest.approx(-math.log(sigmoid(1.0)))


@pytest.mark.parametrize("loss_type", ["ipo", "sigmoid_norm"])
def test_length_normalised_losses_need_token_counts(loss_type):
    tensors = [torch.tensor([v]) for v in (-1.0, -3.0, -2.0, -2.0)]
    with pytest.raises(ValueError, match="chosen_tokens"):
        dpo_loss(*tensors, beta=0.5, loss_type=loss_type)
    with pytest.raises(ValueError, match="rejected_tokens"):
        dpo_loss(*tensors, beta=0.5, loss_type=loss_type, chosen_tokens=torch.tensor([2]))


def test_unknown_loss_type_lists_the_valid_ones():
    tensors = [torch.tensor([v]) for v in (-1.0, -3.0, -2.0, -2.0)]
    with pytest.raises(ValueError, match="hinge") as info:
        dpo_loss(*tensors, beta=0.5, loss_type="hinge")
    assert "sigmoid, ipo, sigmoid_norm" in str(info.value)


@pytest.mark.parametrize("label_smoothing", [-0.1, 0.5, 1.0])
def test_label_smoothing_out_of_range(label_smoothing):
    tensors = [torch.tensor([v]) for v in (-1.0, -3.0, -2.0, -2.0)]
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(*tensors, beta=0.5, label_smoothing=label_smoothing)


@pytest.mark.parametrize("loss_type", ["ipo", "sigmoid_norm"])
def test_label_smoothing_only_for_sigmoid(loss_type):
    tensors = [torch.tensor([v]) for v in (-1.0, -3.0, -2.0, -2.0)]
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(*tensors, beta=0.5, loss_type=loss_type, label_smoothing=0.1,
                 chosen_tokens=torch.tensor([2]), rejected_tokens=torch.tensor([4]))


def test_scored_window_start_is_the_position_before_the_first_label():
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 7, 8],
                           [IGNORE_INDEX, IGNORE_INDEX, 5, 6, IGNORE_INDEX]])
    assert scored_window_start(labels) == 1  # position 1 predicts the label at 2
    logits = torch.randn(2, 5, 11)
    assert torch.allclose(sequence_logps(logits[:, 1:], labels[:, 1:]),
                          sequence_logps(logits, labels))
    assert scored_window_start(torch.full((2, 3), IGNORE_INDEX)) == 0
    assert scored_window_start(torch.tensor([[4, 5, 6]])) == 0
