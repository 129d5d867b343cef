"""UltraFeedback rows -> completions scored on the rubric's 0..5 scale, with justifications."""

from collections import Counter

import pytest

from temporal_ray.data_recipe.errors import DataRecipeError
from temporal_ray.data_recipe.ultrafeedback import cut_words, read_item, rubric_score


@pytest.mark.parametrize("ratings, score", [
    ((1, 5, 5, 5), 0),            # instruction following 1: UltraFeedback's "Irrelevant"
    ((2, 1, 1, 1), 1),            # mean 1.25
    ((2, 2, 3, 3), 3),            # mean 2.5: half up
    ((4, 4, 4, 5), 4),            # 4.25
    ((5, 5, 5, 4), 5),            # 4.75
    (("N/A", 3, 3, 3), 3),        # N/A is left out of the mean
])
def test_gpt4_ratings_on_the_rubric_scale(completion, ratings, score):
    row = {"instruction": "Say hi.", "completions": [completion("Hi!", ratings)]}
    item = read_item("uf.jsonl:1", row, Counter())
    assert item.completions[0].score == score
    assert item.source == "ultrafeedback"    # a row without `source`


def test_rubric_score_rounds_half_up_within_one_to_five():
    assert [rubric_score(m, 3) for m in (1.0, 1.49, 1.5, 3.5, 5.0)] == [1, 1, 2, 4, 5]


def test_unrated_and_empty_completions_are_counted_not_kept(completion):
    unrated = completion("Hi.", ("N/A",) * 4)
    unrated["fine-grained_score"] = None
    fallback = completion("Hello.", ("N/A",) * 4)
    fallback["fine-grained_score"] = 3.75           # no valid rating: the row's own mean
    empty = completion("  ", (5, 5, 5, 5))
    dropped = Counter()
    item = read_item("uf.jsonl:3", {"instruction": "Say hi.",
                                    "completions": [unrated, fallback, empty]}, dropped)
    assert [(c.response, c.rating, c.score) for c in item.completions] == [("Hello.", 3.75, 4)]
    assert dropped == {"completion_no_rating": 1, "completion_empty": 1}


def test_the_justification_is_gpt4s_rationales_cut_to_100_words(completion):
    long = " ".join(["This sentence has exactly seven words."] * 20)
    item = read_item("uf.jsonl:1", {"instruction": "Q?", "completions": [
        completion("A.", (4, 4, 4, 4), rationale=long)]}, Counter())
    text = item.completions[0].justification
    assert len(text.split()) <= 100 and text.endswith(".") and text.startswith("This")
    no_rationales = completion("A.", (4, 4, 4, 4))
    for aspect in no_rationales["annotations"].values():
        aspect.pop("Rationale", None), aspect.pop("Rationale For Rating", None)
    item = read_item("uf.jsonl:2", {"instruction": "Q?", "completions": [no_rationales]},
                     Counter())
    assert item.completions[0].justification == "Your answer could be more specific."
    assert cut_words("one two three four", 2) == "one two ..."


@pytest.mark.parametrize("row, expected", [
    ({"completions": []}, "uf.jsonl:7: missing field 'instruction'"),
    ({"instruction": "Q?", "completions": "none"}, "uf.jsonl:7: field 'completions' must be"),
    ({"instruction": "Q?", "completions": [{"annotations": {}}]},
     "uf.jsonl:7: completions\\[0\\]: missing field 'response'"),
])
def test_a_bad_row_is_refused_by_file_row_and_field(row, expected):
    with pytest.raises(DataRecipeError, match=expected):
        read_item("uf.jsonl:7", row, Counter())
