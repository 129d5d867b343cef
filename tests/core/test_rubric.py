"""temporal_ray.core.rubric: the judge prompt and its placeholders."""

from __future__ import annotations

import pytest

from temporal_ray.core.rubric import ADDITIVE_5_POINT_RUBRIC, judge_messages, load_template


def test_builtin_rubric_asks_for_the_parsed_format():
    assert 'Conclude with the score using the format: "Score: <total points>"' \
        in ADDITIVE_5_POINT_RUBRIC
    assert "additive 5-point scoring" in ADDITIVE_5_POINT_RUBRIC
    assert ADDITIVE_5_POINT_RUBRIC.count("{prompt}") == 1
    assert ADDITIVE_5_POINT_RUBRIC.count("{response}") == 1


@pytest.mark.parametrize("path", [None, ""])
def test_no_template_path_gives_builtin_rubric(path):
    assert load_template(path) is ADDITIVE_5_POINT_RUBRIC


def test_placeholders_filled():
    messages = judge_messages(ADDITIVE_5_POINT_RUBRIC, "What is 2+2?", "It is 4.")
    assert len(messages) == 1
    assert messages[0]["role"] == "user"
    content = messages[0]["content"]
    assert "User: What is 2+2?" in content
    assert "<response>It is 4.</response>" in content
    assert "{prompt}" not in content and "{response}" not in content
    assert content.endswith(ADDITIVE_5_POINT_RUBRIC.rsplit("</response>", 1)[1])


def test_braces_in_prompt_and_response_are_kept_verbatim():
    prompt = "Format {name} with {0} and {{literal}} braces, and {prompt}?"
    response = 'Use f"{x!r:>{width}}" or "{}".format(x); also {response} and {prompt}.'
    content = judge_messages("Q: {prompt}\nA: {response}", prompt, response)[0]["content"]
    assert content == f"Q: {prompt}\nA: {response}"


def test_response_placeholder_inside_prompt_is_not_substituted():
    prompt = "What does the template 'Reply: {response}' print?"
    content = judge_messages("Q: {prompt}\nA: {response}", prompt, "It prints the reply.")
    assert content[0]["content"] == f"Q: {prompt}\nA: It prints the reply."


def test_custom_template_file(tmp_path):
    path = tmp_path / "judge.txt"
    path.write_text("Rate {response} as an answer to {prompt}. Score: <0-5>", encoding="utf-8")
    template = load_template(str(path))
    assert template == path.read_text(encoding="utf-8")
    content = judge_messages(template, "P", "R")[0]["content"]
    assert content == "Rate R as an answer to P. Score: <0-5>"


@pytest.mark.parametrize("text, missing", [
    ("Rate this answer: {response}", "{prompt}"),
    ("Question: {prompt}", "{response}"),
    ("Question: {PROMPT} answer {Response}", "{prompt}"),
])
def test_custom_template_missing_placeholder_raises(tmp_path, text, missing):
    path = tmp_path / "judge.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as info:
        load_template(str(path))
    assert missing in str(info.value)
    assert str(path) in str(info.value)


def test_custom_template_file_missing(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_template(str(tmp_path / "absent.txt"))
