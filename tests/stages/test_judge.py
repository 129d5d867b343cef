"""Judge stage pieces that need no cluster: rule loading and judgement aggregation."""

import pandas as pd
import pytest

from temporal_ray.config import JudgeConfig
from temporal_ray.core.rubric import ADDITIVE_5_POINT_RUBRIC
from temporal_ray.miniature.rules import known_words
from temporal_ray.stages.judge import (
    aggregate_judgements,
    engine_tokens,
    judge_requests,
    load_rule,
    score_with_rule,
)

CANDIDATE = {"prompt_id": "p1", "prompt": "Name a fruit.", "system": "", "role": "past",
             "sample_index": 2, "response": "A banana {is} yellow.", "prompt_tokens": 9,
             "response_tokens": 6}
PATTERN = JudgeConfig().score_pattern


def test_load_rule_imports_module_function():
    assert load_rule("temporal_ray.miniature.rules:known_words") is known_words


@pytest.mark.parametrize("spec, message", [
    ("no_colon_here", "must look like"),
    ("temporal_ray.miniature.rules:nope", "cannot be imported"),
    ("temporal_ray.not_a_module:f", "cannot be imported"),
    ("temporal_ray.core.rubric:ADDITIVE_5_POINT_RUBRIC", "not callable"),
])
def test_load_rule_errors_name_the_rule(spec, message):
    with pytest.raises(ValueError, match=message) as err:
        load_rule(spec)
    assert spec in str(err.value)


def test_rule_scores_fill_the_judge_columns():
    batch = pd.DataFrame([CANDIDATE, {**CANDIDATE, "response": "zzq xxv"}])
    out = score_with_rule(batch, "temporal_ray.miniature.rules:known_words")
    assert list(out["score"]) == [5.0, 0.0]
    assert list(out["valid_judgements"]) == [1, 1]


def test_known_words_is_the_share_of_real_words():
    assert known_words("", "banana qqq") == pytest.approx(2.5)
    assert known_words("", "") == 0.0


def test_judge_requests_one_per_sample_with_own_seed():
    rows = judge_requests(CANDIDATE, ADDITIVE_5_POINT_RUBRIC, samples=3, temperature=0.7,
                          top_p=0.9, max_tokens=64, seed=1)
    assert [r["judge_index"] for r in rows] == [0, 1, 2]
    assert len({r["sampling_params"]["seed"] for r in rows}) == 3
    content = rows[0]["messages"][0]["content"]
    assert "User: Name a fruit." in content
    assert "<response>A banana {is} yellow.</response>" in content
    assert all(r["prompt_id"] == "p1" and r["sample_index"] == 2 for r in rows)


def test_aggregate_averages_valid_judgements_in_order():
    texts = ["Good. Score: 4", "rambling without a verdict", "Score: 2 ... Score: 3", "Score: 9"]
    group = pd.DataFrame([{**CANDIDATE, "judge_index": i, "generated_text": t,
                           "messages": [], "sampling_params": {}, "num_input_tokens": 1,
                           "num_generated_tokens": 1}
                          for i, t in reversed(list(enumerate(texts)))])
    (row,) = aggregate_judgements(group, PATTERN, 0.0, 5.0)
    assert row["score"] == pytest.approx(3.5)
    assert row["judge_scores"] == [4.0, None, 3.0, None]
    assert row["valid_judgements"] == 2
    assert row["judgements"] == texts
    assert row["response"] == CANDIDATE["response"]
    assert "generated_text" not in row and "messages" not in row
    assert "num_input_tokens" not in row  # engine columns do not leak into scored rows


def test_aggregate_with_no_valid_judgement_gives_no_score():
    group = pd.DataFrame([{**CANDIDATE, "judge_index": 0, "generated_text": "no idea"}])
    (row,) = aggregate_judgements(group, PATTERN, 0.0, 5.0)
    assert row["score"] is None and row["valid_judgements"] == 0


def test_aggregate_groups_many_candidates_in_key_order():
    rows = [{**CANDIDATE, "prompt_id": pid, "sample_index": k, "judge_index": j,
             "generated_text": f"Score: {score}"}
            for pid, k, j, score in [("p2", 0, 1, 5), ("p1", 1, 0, 2), ("p2", 0, 0, 3),
                                     ("p1", 0, 0, 4), ("p1", 1, 1, 4)]]
    scored = aggregate_judgements(pd.DataFrame(rows), PATTERN, 0.0, 5.0)
    assert [(r["prompt_id"], r["sample_index"], r["judge_scores"]) for r in scored] == [
        ("p1", 0, [4.0]), ("p1", 1, [2.0, 4.0]), ("p2", 0, [3.0, 5.0])]
    assert [r["score"] for r in scored] == [4.0, 3.0, 4.0]


def test_engine_tokens_sum_the_engines_own_counts():
    outputs = pd.DataFrame([{"num_input_tokens": 40, "num_generated_tokens": 3},
                            {"num_input_tokens": 42, "num_generated_tokens": 8}])
    assert engine_tokens(outputs) == {"judge_prompt_tokens": 82, "judge_generated_tokens": 11}
    # Nothing sent (every request over the judge's context): nothing counted.
    assert engine_tokens(pd.DataFrame()) == {"judge_prompt_tokens": 0,
                                             "judge_generated_tokens": 0}
