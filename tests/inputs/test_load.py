"""temporal_ray.inputs.load on JSONL files: the prompt file's checks, the SFT files', and the
held-out prompts' (other tables and shapes: test_tables.py, test_shapes.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from temporal_ray.core.prompts import PromptFileError
from temporal_ray.inputs.load import load_eval_prompts, load_prompts, load_sft_rows

BUNDLED = Path(__file__).resolve().parents[2] / "temporal_ray" / "assets" / "tiny_prompts.jsonl"


def jsonl(tmp_path: Path, *lines: str, name: str = "prompts.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def error(path: Path, **kwargs) -> str:
    with pytest.raises(PromptFileError) as info:
        load_prompts(str(path), **kwargs)
    return str(info.value)


# --------------------------------------------------------------------------- prompts


def test_valid_file_with_and_without_ids(tmp_path):
    path = jsonl(tmp_path, '{"prompt_id": "a", "prompt": "First?"}', '{"prompt": "Second?"}',
                 '{"prompt_id": 7, "prompt": "Third?", "extra": [1, 2]}')
    result = load_prompts(path)
    assert result.rows == [
        {"prompt_id": "a", "prompt": "First?", "system": ""},
        {"prompt_id": "line2", "prompt": "Second?", "system": ""},  # default id: the line
        {"prompt_id": "7", "prompt": "Third?", "system": ""},       # ids are strings
    ]
    assert result.dropped == {"duplicate_prompt": 0}


def test_blank_lines_skipped_and_line_numbers_kept(tmp_path):
    path = jsonl(tmp_path, "", '{"prompt": "One"}', "   ", '{"prompt": "Two"}')
    assert [r["prompt_id"] for r in load_prompts(path).rows] == ["line2", "line4"]


def test_crlf_line_endings(tmp_path):
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b'{"prompt": "One"}\r\n{"prompt": "Two"}\r\n')
    assert [r["prompt"] for r in load_prompts(path).rows] == ["One", "Two"]


def test_prompt_text_is_kept_verbatim(tmp_path):
    text = "  Line one\nline two with {braces} and \u00e9\u4e2d  "
    path = jsonl(tmp_path, json.dumps({"prompt": text}))
    assert load_prompts(path).rows[0]["prompt"] == text


def test_bundled_prompts_load():
    result = load_prompts(BUNDLED)
    assert len(result.rows) > 0
    assert len({r["prompt_id"] for r in result.rows}) == len(result.rows)
    assert all(r["prompt"].strip() for r in result.rows)


def test_custom_prompt_field(tmp_path):
    path = jsonl(tmp_path, '{"instruction": "Do A", "prompt": "ignored"}',
                 '{"instruction": "Do B"}')
    result = load_prompts(path, prompt_field="instruction")
    assert [r["prompt"] for r in result.rows] == ["Do A", "Do B"]


def test_custom_prompt_field_missing_names_it(tmp_path):
    path = jsonl(tmp_path, '{"prompt": "Do A"}')
    message = error(path, prompt_field="instruction")
    assert f"{path}:1" in message and "'instruction'" in message


def test_duplicate_prompts_dropped_and_counted(tmp_path):
    path = jsonl(tmp_path, '{"prompt_id": "a", "prompt": "Same"}',
                 '{"prompt_id": "b", "prompt": "Other"}',
                 '{"prompt_id": "c", "prompt": "Same"}',
                 '{"prompt": "Same"}')
    result = load_prompts(path)
    assert result.rows == [{"prompt_id": "a", "prompt": "Same", "system": ""},
                           {"prompt_id": "b", "prompt": "Other", "system": ""}]
    assert result.dropped == {"duplicate_prompt": 2}


def test_prompts_differing_in_whitespace_are_distinct(tmp_path):
    path = jsonl(tmp_path, '{"prompt": "Same"}', '{"prompt": "Same "}')
    assert len(load_prompts(path).rows) == 2


# ------------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    path = tmp_path / "absent.jsonl"
    message = error(path)
    assert str(path) in message and "does not exist" in message


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content, encoding="utf-8")
    message = error(path)
    assert str(path) in message and "no prompts" in message


def test_not_json_line_names_file_and_line(tmp_path):
    path = jsonl(tmp_path, '{"prompt": "ok"}', '{"prompt": "ok 2"}', '{"prompt": oops}')
    message = error(path)
    assert message.startswith(f"{path}:3: ")
    assert "not valid JSON" in message


@pytest.mark.parametrize("line, kind", [('["a", "b"]', "list"), ('"text"', "str"),
                                        ("42", "int"), ("null", "NoneType")])
def test_line_that_is_not_an_object(tmp_path, line, kind):
    path = jsonl(tmp_path, '{"prompt": "ok"}', line)
    message = error(path)
    assert message.startswith(f"{path}:2: ")
    assert f"expected a JSON object, got {kind}" in message


def test_missing_field(tmp_path):
    path = jsonl(tmp_path, '{"prompt": "ok"}', '{"text": "no prompt field"}')
    message = error(path)
    assert message.startswith(f"{path}:2: ")
    assert "missing field 'prompt'" in message


@pytest.mark.parametrize("value", ['""', '"   "', '"\\n\\t"', "42", "null"])
def test_empty_whitespace_or_non_string_prompt(tmp_path, value):
    path = jsonl(tmp_path, '{"prompt": "ok"}', f'{{"prompt": {value}}}')
    message = error(path)
    assert message.startswith(f"{path}:2: ")
    assert "'prompt' must be a non-empty string" in message


def test_duplicate_prompt_id(tmp_path):
    path = jsonl(tmp_path, '{"prompt_id": "x", "prompt": "One"}',
                 '{"prompt_id": "y", "prompt": "Two"}',
                 '{"prompt_id": "x", "prompt": "Three"}')
    message = error(path)
    assert message.startswith(f"{path}:3: ")
    assert "duplicate prompt_id 'x'" in message


def test_non_utf8_bytes_name_the_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"prompt": "ok"}\n{"prompt": "ok 2"}\n{"prompt": "caf\xe9"}\n')
    message = error(path)
    assert message.startswith(f"{path}:3: ")
    assert "not valid UTF-8" in message


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\u0085"])
def test_unicode_line_separator_inside_a_prompt(tmp_path, separator):
    text = f"first part{separator}second part"
    path = jsonl(tmp_path, json.dumps({"prompt": text}, ensure_ascii=False),
                 '{"prompt": "next"}')
    assert [r["prompt"] for r in load_prompts(path).rows] == [text, "next"]




# ------------------------------------------------------------------------------- SFT


def write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_rows_from_several_files_in_order(tmp_path):
    ift = write(tmp_path / "ift.jsonl", [json.dumps({"prompt": "a", "response": "b"})])
    eft = write(tmp_path / "eft.jsonl", [json.dumps({"prompt": "judge", "response": "Score: 4"}),
                                         "", json.dumps({"prompt": "c", "response": "d"})])
    rows = load_sft_rows([ift, eft])
    assert [(r["source"], r["prompt"]) for r in rows] == [(ift, "a"), (eft, "judge"), (eft, "c")]


@pytest.mark.parametrize(("line", "message"), [
    ('{"prompt": "a"}', r"x.jsonl:2: missing field 'response'"),
    ('{"prompt": " ", "response": "b"}', r"x.jsonl:2: field 'prompt' must be a non-empty"),
    ('{"prompt": "a", "response": 3}', r"x.jsonl:2: field 'response' must be a non-empty"),
    ('["a", "b"]', r"x.jsonl:2: expected a JSON object"),
    ('{"prompt": ', r"x.jsonl:2: not valid JSON"),
])
def test_bad_lines_are_named(tmp_path, line, message):
    path = write(tmp_path / "x.jsonl", [json.dumps({"prompt": "ok", "response": "ok"}), line])
    with pytest.raises(PromptFileError, match=message):
        load_sft_rows([path])


def test_missing_empty_and_unset_files(tmp_path):
    with pytest.raises(PromptFileError, match=r"does not exist \(set sft.data\)"):
        load_sft_rows([str(tmp_path / "nope.jsonl")])
    with pytest.raises(PromptFileError, match="holds no examples"):
        load_sft_rows([write(tmp_path / "empty.jsonl", [""])])
    with pytest.raises(PromptFileError, match="set sft.data"):
        load_sft_rows([])


# -------------------------------------------------------------------- held-out prompts


def test_eval_prompts_keep_their_fields_and_stop_at_max(tmp_path):
    path = jsonl(tmp_path, '{"prompt": "A?", "answer": "a"}', '{"prompt": "B?"}',
                 '{"prompt": "C?"}')
    rows = load_eval_prompts(str(path), max_prompts=2)
    assert rows == [{"prompt": "A?", "answer": "a", "system": "", "prompt_id": "line1"},
                    {"prompt": "B?", "system": "", "prompt_id": "line2"}]
    with pytest.raises(PromptFileError, match="eval.prompts is not set"):
        load_eval_prompts(None)
