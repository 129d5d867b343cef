"""The lm-evaluation-harness hook, for real: a task of our own on local data runs on the tiny
model; a stock task whose dataset is not in the local cache (no internet here) fails fast with
a message that says what to do; an absent harness is named with the install command."""

from __future__ import annotations

import sys

import pytest

from temporal_ray.evaluate.lm_eval_hook import (
    LmEvalUnavailable,
    missing,
    numeric_metrics,
    run_lm_eval,
)

pytest.importorskip("lm_eval")


def test_numeric_metrics_drop_labels():
    results = {"gsm8k": {"alias": "gsm8k", "exact_match,strict-match": 0.25,
                         "exact_match_stderr,strict-match": 0.05, "samples": 8}}
    assert numeric_metrics(results) == {"gsm8k": {"exact_match,strict-match": 0.25,
                                                  "exact_match_stderr,strict-match": 0.05,
                                                  "samples": 8.0}}


@pytest.mark.slow
def test_local_task_runs_and_a_missing_dataset_says_what_to_do(tiny_model, local_lm_eval_task,
                                                              monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert missing() is None
    metrics = run_lm_eval(tiny_model, ["toy_mc"], limit=None, use_gpu=False,
                          include_path=local_lm_eval_task)
    assert set(metrics) == {"toy_mc"}
    assert 0.0 <= metrics["toy_mc"]["acc,none"] <= 1.0
    assert metrics["toy_mc"]["sample_len"] == 3
    with pytest.raises(LmEvalUnavailable, match=r"could not run arc_challenge.*"
                                                r"local Hugging Face cache.*HF_DATASETS_CACHE"):
        run_lm_eval(tiny_model, ["arc_challenge"], limit=1, use_gpu=False)


def test_absent_harness_is_named_with_the_install_command(tiny_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # what a machine without it sees
    assert "pip install lm_eval" in missing()
    with pytest.raises(LmEvalUnavailable, match="lm-evaluation-harness is not installed"):
        run_lm_eval(tiny_model, ["gsm8k"], limit=1, use_gpu=False)
