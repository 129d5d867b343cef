"""The choice of IFT, EFT and prompt rows: disjoint, balanced, seeded."""

from collections import Counter

import pytest

from temporal_ray.config.experiment import JudgeConfig
from temporal_ray.core.judging import parse_judgement
from temporal_ray.core.rubric import ADDITIVE_5_POINT_RUBRIC
from temporal_ray.data_recipe.errors import DataRecipeError
from temporal_ray.data_recipe.oasst import first_turn_pairs
from temporal_ray.data_recipe.split import RecipeOptions, split_rows
from temporal_ray.data_recipe.ultrafeedback import read_item

SMALL = RecipeOptions(ift_size=10, eft_size=24, iterations=2, prompts_per_iteration=30)


@pytest.fixture
def inputs(oasst_messages, ultrafeedback_rows):
    pairs, _ = first_turn_pairs((f"m{i}", m) for i, m in enumerate(oasst_messages))
    rows = ultrafeedback_rows(120)
    rows.append(dict(rows[0], instruction="  How do I boil an EGG? "))  # an OA prompt again
    rows.append(dict(rows[1], instruction="Hi?"))                       # too short
    items = [read_item(f"uf:{i}", row, Counter()) for i, row in enumerate(rows)]
    return pairs, items


def instructions(rows):
    return {r["id"] for r in rows}


def test_ift_eft_and_prompts_are_disjoint_and_sized(inputs):
    out = split_rows(*inputs, SMALL)
    assert out.counts["ift_by_source"] == {"oasst": 2, "ultrafeedback": 8}
    assert (len(out.ift), len(out.eft), len(out.prompts)) == (10, 24, 60)
    prompt_ids = {r["prompt_id"] for r in out.prompts}
    assert len(prompt_ids) == 60
    assert not instructions(out.ift) & instructions(out.eft)
    assert not (instructions(out.ift) | instructions(out.eft)) & prompt_ids
    assert [r["iteration"] for r in out.prompts] == [0] * 30 + [1] * 30
    assert out.dropped == {"ultrafeedback.duplicate_prompt": 1,
                           "ultrafeedback.prompt_too_short": 1}
    assert out.shortfalls == []


def test_eft_rows_are_the_rubric_answered_with_a_parseable_score(inputs):
    out = split_rows(*inputs, SMALL)
    assert out.counts["eft_by_score"] == {str(s): 4 for s in range(6)}   # balanced
    pattern = JudgeConfig().score_pattern
    for row in out.eft:
        head, tail = ADDITIVE_5_POINT_RUBRIC.split("{prompt}")[0], "Score: <total points>"
        assert row["prompt"].startswith(head) and tail in row["prompt"]
        assert "<response>Answer " in row["prompt"]
        justification, score_line = row["response"].rsplit("\n", 1)
        assert justification and len(justification.split()) <= 100
        assert parse_judgement(row["response"], pattern).score == row["score"]
        assert score_line == f"Score: {row['score']}"


def test_ift_fill_takes_only_well_rated_completions(inputs):
    out = split_rows(*inputs, RecipeOptions(ift_size=10, eft_size=0, iterations=1,
                                            prompts_per_iteration=1, ift_min_rating=5.0))
    assert all(r["response"].startswith("Answer") for r in out.ift if r["source"] != "oasst")
    unbalanced = split_rows(*inputs, RecipeOptions(ift_size=0, eft_size=60, iterations=1,
                                                   prompts_per_iteration=1,
                                                   balance_scores=False))
    assert len(unbalanced.eft) == 60 and unbalanced.counts["ift"] == 0


def test_the_same_seed_gives_the_same_rows_and_another_seed_others(inputs):
    first, again = split_rows(*inputs, SMALL), split_rows(*inputs, SMALL)
    assert (first.ift, first.eft, first.prompts) == (again.ift, again.eft, again.prompts)
    other = split_rows(*inputs, RecipeOptions(**{**SMALL.__dict__, "seed": 1}))
    assert other.prompts != first.prompts


def test_too_few_prompts_says_which_option_to_lower_and_short_sets_are_reported(inputs):
    with pytest.raises(DataRecipeError, match="need 2000: lower --prompts-per-iteration"):
        split_rows(*inputs, RecipeOptions(ift_size=10, eft_size=24, iterations=2,
                                          prompts_per_iteration=1000))
    # 80 of the 120 instructions have a completion rated 5 (their best is 4.5 or more)
    out = split_rows(*inputs, RecipeOptions(ift_size=200, eft_size=1, iterations=1,
                                            prompts_per_iteration=1))
    assert out.shortfalls == ["IFT has 82 of the 200 pairs asked for (lower --ift-min-rating "
                              "or give more data)"]


def test_eft_leaves_out_judge_prompts_sft_would_cut_before_the_score(inputs):
    # "Question number N: ..." + "Answer j to question N.": 60 characters for N < 10, more after
    limit = len(ADDITIVE_5_POINT_RUBRIC) - len("{prompt}{response}") + 60
    out = split_rows(*inputs, RecipeOptions(ift_size=0, eft_size=50, iterations=1,
                                            prompts_per_iteration=1, max_eft_prompt_chars=limit))
    assert len(out.eft) == 10 and out.dropped["ultrafeedback.eft_prompt_too_long"] == 4 * 110
    assert all(len(row["prompt"]) <= limit for row in out.eft)
