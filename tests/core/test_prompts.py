"""temporal_ray.core.prompts: the JSONL prompt file and the per-iteration chunks."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from temporal_ray.core.prompts import PromptFileError, iteration_chunk, load_prompts

BUNDLED = Path(__file__).resolve().parents[2] / "temporal_ray" / "assets" / "tiny_prompts.jsonl"


def jsonl(tmp_path: Path, *lines: str, name: str = "prompts.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def error(path: Path, **kwargs) -> str:
    with pytest.raises(PromptFileError) as info:
        load_prompts(path, **kwargs)
    return str(info.value)


# ------------------------------------------------------------------------------ loading


def test_valid_file_with_and_without_ids(tmp_path):
    path = jsonl(tmp_path, '{"prompt_id": "a", "prompt": "First?"}', '{"prompt": "Second?"}',
                 '{"prompt_id": 7, "prompt": "Third?", "extra": [1, 2]}')
    result = load_prompts(path)
    assert result.rows == [
        {"prompt_id": "a", "prompt": "First?"},
        {"prompt_id": "line2", "prompt": "Second?"},   # default id: the line number
        {"prompt_id": "7", "prompt": "Third?"},        # ids are strings
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
    assert result.rows == [{"prompt_id": "a", "prompt": "Same"},
                           {"prompt_id": "b", "prompt": "Other"}]
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


@pytest.mark.parametrize("value", ['""', '"   "', '"\\n\\t"', "42", "null", '["a"]'])
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


# ------------------------------------------------------------------------ iteration_chunk


def make_rows(n: int) -> list[dict[str, str]]:
    return [{"prompt_id": f"p{i}", "prompt": f"prompt {i}"} for i in range(n)]


def ids(chunk: list[dict[str, str]]) -> list[str]:
    return [row["prompt_id"] for row in chunk]


def test_chunks_are_consecutive_in_file_order():
    rows = make_rows(6)
    assert ids(iteration_chunk(rows, 0, 2)) == ["p0", "p1"]
    assert ids(iteration_chunk(rows, 1, 2)) == ["p2", "p3"]
    assert ids(iteration_chunk(rows, 2, 2)) == ["p4", "p5"]


def test_chunks_wrap_around():
    rows = make_rows(5)
    assert ids(iteration_chunk(rows, 2, 2)) == ["p4", "p0"]
    assert ids(iteration_chunk(rows, 3, 2)) == ["p1", "p2"]
    assert ids(iteration_chunk(rows, 4, 2)) == ["p3", "p4"]
    assert ids(iteration_chunk(rows, 5, 2)) == ["p0", "p1"]


def test_wrap_around_uses_every_prompt_equally():
    rows = make_rows(5)
    seen = Counter(pid for i in range(5) for pid in ids(iteration_chunk(rows, i, 3)))
    assert seen == {f"p{i}": 3 for i in range(5)}


@pytest.mark.parametrize("n, size", [(5, 2), (7, 3), (4, 4), (3, 10), (1, 1), (1, 5)])
def test_chunk_size_and_no_repeats(n, size):
    rows = make_rows(n)
    for iteration in range(4):
        chunk = iteration_chunk(rows, iteration, size)
        assert len(chunk) == min(size, n)
        assert len(set(ids(chunk))) == len(chunk)


def test_chunk_larger_than_file_is_the_whole_file():
    rows = make_rows(3)
    for iteration in range(3):
        assert iteration_chunk(rows, iteration, 10) == rows


def test_chunk_rows_are_the_loaded_rows():
    rows = make_rows(4)
    chunk = iteration_chunk(rows, 1, 3)
    assert chunk == [rows[3], rows[0], rows[1]]
