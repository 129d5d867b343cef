"""Open Assistant messages -> first-turn pairs, with every dropped prompt counted."""

import pytest

from temporal_ray.data_recipe.errors import DataRecipeError
from temporal_ray.data_recipe.oasst import first_turn_pairs


def rows(messages, name="train.parquet"):
    return [(f"{name} row {i}", m) for i, m in enumerate(messages, start=1)]


def test_the_root_and_its_best_ranked_english_reply_and_every_drop_by_reason(oasst_messages):
    pairs, dropped = first_turn_pairs(rows(oasst_messages))
    assert [(p["prompt"], p["response"], p["id"]) for p in pairs] == [
        ("How do I boil an egg?", "Put it in boiling water for 7-9 minutes.", "oasst-a"),
        ("Name a prime number.", "7 is prime.", "oasst-b")]   # b2, ranked 0, is synthetic
    assert dropped == {"prompt_not_en": 1, "prompt_review_failed": 1, "no_usable_reply": 1,
                       "reply_deleted": 1, "duplicate_prompt": 1}


def test_oasst1_and_oasst2_together_count_each_tree_once(oasst_messages):
    pairs, dropped = first_turn_pairs(rows(oasst_messages) + rows(oasst_messages, "oasst2"))
    assert len(pairs) == 2 and dropped["duplicate_message"] == len(oasst_messages)


def test_other_languages_on_request(oasst_messages):
    pairs, _ = first_turn_pairs(rows(oasst_messages), languages=("en", "es"))
    assert "¿Qué hora es?" in [p["prompt"] for p in pairs]


@pytest.mark.parametrize("field, value, expected", [
    ("role", None, "missing field 'role'"),
    ("role", "user", "field 'role' must be one of"),
    ("rank", "best", "field 'rank' must be a number or null"),
    ("deleted", "no", "field 'deleted' must be true, false or null"),
    ("text", 5, "field 'text' must be a string"),
])
def test_a_bad_row_is_refused_by_file_row_and_field(message, field, value, expected):
    bad = message("x1", "x", "Hi.", "assistant", rank=0)
    bad[field] = value
    messages = [message("x", None, "Hello?", "prompter"), bad]
    with pytest.raises(DataRecipeError, match=expected) as err:
        first_turn_pairs(rows(messages))
    assert str(err.value).startswith("train.parquet row 2: ")
