"""Grading a checkpoint's held-out answers: hand-worked accuracy, per family and quality mix."""

from __future__ import annotations

import pytest

from temporal_ray.miniature.ground_truth import answer_summary
from temporal_ray.miniature.tasks import Task


def test_answer_summary_by_hand():
    tasks = {"a": Task("add", "What is 2 + 3?", "5"),
             "b": Task("add", "What is 4 + 4?", "8"),
             "c": Task("reverse", "Reverse the word: cable", "elbac"),
             "d": Task("count", "How many letters in: tiger?", "5")}
    answers = [
        {"prompt_id": "a", "response": "5", "response_tokens": 1},               # clean
        {"prompt_id": "b", "response": "The answer is 8.", "response_tokens": 5},  # verbose
        {"prompt_id": "c", "response": "elbca", "response_tokens": 3},          # wrong
        {"prompt_id": "d", "response": "hello there", "response_tokens": 3},    # off topic
    ]
    summary = answer_summary(answers, tasks)
    assert summary["answers"] == 4
    assert summary["accuracy"] == pytest.approx(2 / 4)
    assert summary["clean_accuracy"] == pytest.approx(1 / 4)
    assert summary["accuracy_by_family"] == {"add": 1.0, "count": 0.0, "reverse": 0.0}
    assert summary["qualities"] == {"correct_clean": 1, "correct_verbose": 1,
                                    "wrong_on_topic": 1, "off_topic": 1}
    assert summary["mean_answer_tokens"] == pytest.approx(3.0)


def test_checkpoint_requests_hold_both_checks_with_one_column_set():
    from temporal_ray.config import load_config
    from temporal_ray.miniature.config import MiniatureRunConfig
    from temporal_ray.miniature.ground_truth import CHECK_ROLE, HELDOUT_ROLE, checkpoint_requests
    from temporal_ray.miniature.recipe import TOY_JUDGE_TEMPLATE

    cfg = load_config("configs/miniature.yaml", [f"judge.prompt_template={TOY_JUDGE_TEMPLATE}",
                                                 "judge.samples=3", "miniature.answer_tokens=9"],
                      schema=MiniatureRunConfig)
    heldout = [{"prompt_id": "h0", "prompt": "What is 2 + 3?", "answer": "5", "family": "add"}]
    check = [{"prompt_id": "c0", "prompt": "What is 1 + 1?", "response": "2", "true_score": 5}]
    requests = checkpoint_requests(heldout, check, cfg)
    assert len(requests) == 1 + 3
    assert len({frozenset(r) for r in requests}) == 1  # one column set: one Arrow schema
    answer, *judgements = requests
    assert answer["role"] == HELDOUT_ROLE and answer["messages"][0]["content"] == heldout[0][
        "prompt"]
    assert answer["sampling_params"]["temperature"] == 0.0
    assert answer["sampling_params"]["max_tokens"] == 9
    assert [j["judge_index"] for j in judgements] == [0, 1, 2]
    assert {j["role"] for j in judgements} == {CHECK_ROLE}
    content = judgements[0]["messages"][0]["content"]
    assert "Question: What is 1 + 1?" in content and "Response: 2" in content
    assert len({j["sampling_params"]["seed"] for j in judgements}) == 3


def test_judge_measures_and_the_form_only_baseline_by_hand():
    from temporal_ray.miniature.ground_truth import form_only_judge, judge_measures
    from temporal_ray.miniature.tasks import answer_key

    # Truths: clean 5, verbose 4, wrong 2, wrong 2, off topic 0. The judge ranks one wrong
    # answer above the verbose one: 3 of 4 (correct, wrong) pairs in order.
    measures = judge_measures([5, 3, 4, 1, 0], [5, 4, 2, 2, 0])
    assert measures["correct_vs_wrong_auc"] == pytest.approx(3 / 4)
    assert measures["agreement"] == pytest.approx(2 / 5)
    assert judge_measures([None, 4], [5, 2])["correct_vs_wrong_auc"] is None  # no parsed correct

    task = Task("sortd", "Sort the digits: 312", "123")
    check = [{"prompt": task.prompt, "response": r, "true_score": t}
             for r, t in (("123", 5), ("Sorted: 123.", 4), ("132", 2), ("thank you!", 0))]
    base = form_only_judge(check, answer_key([task]))
    assert base["agreement"] == pytest.approx(3 / 4)  # right on form, wrong on the wrong answer
    # The bare wrong "132" scores 5: a tie with the clean answer (1/2), above the verbose (0).
    assert base["correct_vs_wrong_auc"] == pytest.approx(1 / 4)


def test_single_judgements_count_every_sample_and_unparsed_ones_as_misses():
    from temporal_ray.miniature.ground_truth import single_judgement_agreement

    truth = {"a": 5, "b": 2}
    judged = [{"prompt_id": "a", "judge_scores": [5.0, 2.0]},  # split: averages to 3.5
              {"prompt_id": "b", "judge_scores": [2.0]}]       # one of two samples unparsed
    assert single_judgement_agreement(judged, truth, samples=2) == 2 / 4
    assert single_judgement_agreement([], truth, samples=2) is None
