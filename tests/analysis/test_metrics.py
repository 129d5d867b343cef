"""Metrics against hand-worked numbers, and response-only pooling on the tiny model."""

from __future__ import annotations

import math

import pytest
import torch

from temporal_ray.analysis.metrics import (
    accuracy,
    chosen_rejected_cosine,
    cosine,
    dpo_summary,
    judge_agreement,
    mean_pooled_response_features,
    pair_cosines,
    pair_score_stats,
    pearson,
    pooled_features_batch,
    rankdata,
    spearman,
)
from temporal_ray.miniature.tasks import Task, is_correct


def test_accuracy_from_booleans_and_from_a_grader():
    assert accuracy([True, False, True, True]) == 0.75
    tasks = [Task("add", "What is 1 + 1?", "2"), Task("count", "How many letters in: cat?", "3")]
    assert accuracy(["2", "The answer is 4."], tasks, is_correct) == 0.5
    assert accuracy(["2", "3"], ["2", "3"], lambda ref, resp: ref == resp) == 1.0
    with pytest.raises(ValueError):
        accuracy([])
    with pytest.raises(ValueError):
        accuracy(["2"], [], is_correct)


def test_rankdata_averages_ties():
    assert rankdata([10, 20, 20, 30]) == [1.0, 2.5, 2.5, 4.0]
    assert rankdata([3, 1, 3, 3]) == [3.0, 1.0, 3.0, 3.0]


def test_spearman_with_ties_by_hand():
    # x ranks [1, 2.5, 2.5, 4], y ranks [1, 2, 3, 4]; both have mean 2.5.
    # sum dx*dy = (-1.5)(-1.5) + 0 + 0 + (1.5)(1.5) = 4.5; sum dx^2 = 4.5; sum dy^2 = 5.
    # rho = 4.5 / sqrt(4.5 * 5) = sqrt(0.9).
    assert spearman([1, 2, 2, 3], [10, 20, 30, 40]) == pytest.approx(math.sqrt(0.9))
    assert spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [1, 4, 9]) == pytest.approx(1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    assert pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(5 / math.sqrt(2 * 114 / 9))


def test_judge_agreement_by_hand():
    judge = [5, 4.5, None, 0, 2]
    truth = [5, 5, 4, 2, 2]
    got = judge_agreement(judge, truth)
    # parsed: (5,5) (4.5,5) (0,2) (2,2); within 0.5: three of them.
    assert got["count"] == 5 and got["unparsed"] == 1
    assert got["unparsed_share"] == pytest.approx(0.2)
    assert got["agreement"] == pytest.approx(3 / 5)
    assert got["agreement_parsed"] == pytest.approx(3 / 4)
    assert got["mean_abs_error"] == pytest.approx((0 + 0.5 + 2 + 0) / 4)
    # judge ranks [4, 3, 1, 2]; truth ranks [3.5, 3.5, 1.5, 1.5] -> rho = 4 / sqrt(5 * 4).
    assert got["spearman"] == pytest.approx(4 / math.sqrt(20))
    none = judge_agreement([None, None], [5, 0])
    assert none["agreement"] == 0.0 and none["agreement_parsed"] is None
    assert none["spearman"] is None and none["unparsed_share"] == 1.0


def test_pair_score_stats_by_hand():
    pairs = [{"chosen_score": 5, "rejected_score": 2}, {"chosen_score": 4.0, "rejected_score": 3.5}]
    assert pair_score_stats(pairs) == {"count": 2, "mean_chosen_score": 4.5,
                                       "mean_rejected_score": 2.75, "mean_gap": 1.75}
    assert pair_score_stats([])["mean_gap"] is None


def test_cosine_of_simple_vectors():
    assert cosine([1, 0], [0, 1]) == pytest.approx(0.0)
    assert cosine([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert cosine(torch.tensor([1.0, 1.0]), torch.tensor([-1.0, -1.0])) == pytest.approx(-1.0)
    assert cosine([3, 4], [4, 3]) == pytest.approx(24 / 25)
    assert cosine([0, 0], [1, 2]) == 0.0


def test_dpo_summary_picks_the_fields():
    metrics = {"pairs": 8, "margin_after": 0.3, "train_reward_margin": 0.1, "mean_grad_norm": 2.0,
               "accuracy_after": 0.75, "loss_before": 0.69, "loss_after": 0.5, "seconds": 3,
               "history": [{"grad_norm": 3.0}, {"grad_norm": 1.0}]}
    got = dpo_summary(metrics)
    assert got["reward_margin"] == 0.3 and got["train_reward_margin"] == 0.1
    assert got["mean_grad_norm"] == 2.0 and got["pairs"] == 8
    assert got["first_grad_norm"] == 3.0 and got["last_grad_norm"] == 1.0
    assert "seconds" not in got
    assert dpo_summary({})["reward_margin"] is None


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    return (AutoModelForCausalLM.from_pretrained(tiny_model).eval(),
            AutoTokenizer.from_pretrained(tiny_model))


def test_features_pool_the_response_tokens_only(model_and_tokenizer):
    model, tok = model_and_tokenizer
    prompt, response = "What is 23 + 58?", "The answer is 81."
    text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                   add_generation_prompt=True)
    prompt_ids = tok(text, add_special_tokens=False)["input_ids"]
    response_ids = tok(response, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        out = model(input_ids=torch.tensor([prompt_ids + response_ids]),
                    output_hidden_states=True)
    last = out.hidden_states[-1][0]
    manual = last[len(prompt_ids):].mean(dim=0)
    got = mean_pooled_response_features(model, tok, prompt, response)
    assert got.shape == (model.config.hidden_size,)
    assert torch.allclose(got, manual, atol=1e-5)
    assert not torch.allclose(got, last.mean(dim=0), atol=1e-3)  # the prompt is left out
    with pytest.raises(ValueError, match="empty response"):
        mean_pooled_response_features(model, tok, prompt, "")


def test_batched_features_match_one_at_a_time(model_and_tokenizer):
    model, tok = model_and_tokenizer
    items = [("What is 1 + 1?", "2"), ("Reverse the word: cable", "The word reversed is elbac.")]
    batch = pooled_features_batch(model, tok, items)
    for row, (p, r) in zip(batch, items):
        assert torch.allclose(row, mean_pooled_response_features(model, tok, p, r), atol=1e-4)


def test_features_respect_max_length(model_and_tokenizer):
    model, tok = model_and_tokenizer
    long_prompt = "word " * 600
    feats = mean_pooled_response_features(model, tok, long_prompt, "fine", max_length=64)
    assert torch.isfinite(feats).all()


def test_chosen_rejected_cosine(model_and_tokenizer):
    model, tok = model_and_tokenizer
    same = [{"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "4"},
            {"prompt": "Sort the letters: dcab", "chosen": "abcd", "rejected": "abcd"}]
    assert chosen_rejected_cosine(model, tok, same, batch_size=1) == pytest.approx(1.0, abs=1e-5)
    mixed = same + [{"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "see you later."},
                    {"prompt": "What is 2 + 2?", "chosen": "4", "rejected": ""}]
    values = pair_cosines(model, tok, mixed, batch_size=2)
    assert values[3] is None and values[2] < 1.0 - 1e-4
    mean = chosen_rejected_cosine(model, tok, mixed)
    assert mean == pytest.approx(sum(values[:3]) / 3, abs=1e-6)


def test_ranking_auc():
    from temporal_ray.analysis.metrics import ranking_auc

    assert ranking_auc([5, 4], [2, 0]) == 1.0
    assert ranking_auc([2, 0], [5, 4]) == 0.0
    assert ranking_auc([3, 3], [3]) == 0.5  # ties count half
    assert ranking_auc([5, 2], [4]) == 0.5
    assert ranking_auc([], [1]) is None and ranking_auc([1], []) is None
