"""temporal_ray.core.judging: one judgement text -> a score, many -> their average."""

from __future__ import annotations

import pytest

from temporal_ray.config import JudgeConfig
from temporal_ray.core.judging import (
    NO_SCORE,
    OUT_OF_RANGE,
    Judgement,
    average_score,
    count_problems,
    parse_judgement,
)

# The pattern a run uses by default (the config), i.e. method.md's `Score:\s*([0-5](\.\d+)?)`.
PATTERN = JudgeConfig().score_pattern
# A pattern that reads any number, so that the range check itself is exercised.
ANY_NUMBER = r"Score:\s*(\d+(?:\.\d+)?)"


def parse(text: str, pattern: str = PATTERN) -> Judgement:
    return parse_judgement(text, pattern, 0.0, 5.0)


def test_integer_score():
    assert parse("The response is relevant and helpful.\nScore: 4") == Judgement(4.0, None)


def test_decimal_score():
    judgement = parse("Mostly complete. Score: 3.5")
    assert judgement.score == pytest.approx(3.5)
    assert judgement.problem is None


@pytest.mark.parametrize("text, expected", [
    ("Score:0", 0.0),            # no space, lower bound
    ("Score:   5", 5.0),         # several spaces, upper bound
    ("Score:\n2", 2.0),          # \s matches a newline
    ("Score: 4.", 4.0),          # a full stop after the number is not a decimal part
    ("Score: 2.25 points", 2.25),
])
def test_score_formats(text, expected):
    assert parse(text).score == pytest.approx(expected)


def test_last_score_wins():
    text = "First impression Score: 2. On reflection it deserves more. Score: 4"
    assert parse(text).score == 4.0


def test_last_score_wins_even_if_lower():
    text = "Score: 5 would be too generous.\nScore: 1"
    assert parse(text).score == 1.0


@pytest.mark.parametrize("text", [
    "",
    "The answer is relevant, addresses the question and is well organised.",
    "I would give it four points out of five.",
    "score: 4",            # the pattern is case-sensitive, as in method.md
    "Score: four",
    "Score:",
])
def test_no_score(text):
    assert parse(text) == Judgement(None, NO_SCORE)


def test_score_seven_is_dropped_as_out_of_range_with_default_pattern():
    # The default pattern reads the whole number, so "7" is dropped as out of range, never
    # accepted as 7 or clipped to 5.
    assert parse("Great answer! Score: 7") == Judgement(None, OUT_OF_RANGE)


def test_out_of_range_decimal_with_default_pattern():
    # "5.5" matches [0-5](\.\d+)? but lies above the 5-point scale.
    assert parse("Score: 5.5") == Judgement(None, OUT_OF_RANGE)


@pytest.mark.parametrize("text", ["Score: 7", "Score: 10", "Score: 5.01"])
def test_out_of_range_with_wider_pattern(text):
    assert parse(text, ANY_NUMBER) == Judgement(None, OUT_OF_RANGE)


def test_range_bounds_are_inclusive_and_configurable():
    assert parse_judgement("Score: 10", ANY_NUMBER, 0.0, 10.0).score == 10.0
    assert parse_judgement("Score: 0", ANY_NUMBER, 1.0, 10.0) == Judgement(None, OUT_OF_RANGE)


@pytest.mark.parametrize("text", ["Score: 10", "Score: 45"])
def test_two_digit_score_is_not_read_as_its_first_digit(text):
    judgement = parse(text)
    assert judgement == Judgement(None, OUT_OF_RANGE)


def test_pattern_without_group_gives_no_score():
    assert parse("Score: 4", r"Score:\s*\d") == Judgement(None, NO_SCORE)


def test_average_of_valid_scores_only():
    judgements = [parse("Score: 4"), parse("no verdict"), parse("Score: 3"), parse("Score: 5.5")]
    assert average_score(judgements) == pytest.approx(3.5)


def test_average_of_decimal_scores():
    judgements = [parse("Score: 2.5"), parse("Score: 3"), parse("Score: 4.5")]
    assert average_score(judgements) == pytest.approx(10 / 3)


def test_average_of_single_valid_score():
    assert average_score([parse("nothing"), parse("Score: 0")]) == 0.0


def test_all_invalid_gives_none():
    judgements = [parse("nothing"), parse("Score: 7"), parse("Score: 5.5")]
    assert average_score(judgements) is None


def test_no_judgements_gives_none():
    assert average_score([]) is None


def test_count_problems_by_reason():
    judgements = [
        parse("Score: 4"),
        parse("no verdict"),
        parse("Score: 7"),      # out of range
        parse("Score: 5.5"),    # out of range
        parse("Score: 5.75"),   # out of range
    ]
    counts = count_problems(judgements)
    assert counts == {NO_SCORE: 1, OUT_OF_RANGE: 3}
    assert sum(counts.values()) == sum(j.score is None for j in judgements)


def test_count_problems_empty_when_all_valid():
    assert count_problems([parse("Score: 1"), parse("Score: 2")]) == {}
