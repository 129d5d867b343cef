"""Prompts in: read the JSONL prompt file, refuse bad lines by name, cut per-iteration chunks.

In:  a JSONL file, one object per line with the prompt text (field `prompt` by default) and an
     optional `prompt_id`.
Out: rows {prompt_id, prompt}. Problems that make the file unusable raise `PromptFileError`
     naming the file, line and field; duplicate prompts are dropped and counted.
This module is pure: it knows nothing of Ray or models.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


class PromptFileError(ValueError):
    """The prompt file cannot be used; the message names the file, line and field."""


@dataclass
class PromptSet:
    rows: list[dict[str, str]]
    dropped: dict[str, int] = field(default_factory=dict)


def read_jsonl(path: str | Path, what: str, setting: str) -> Iterator[tuple[str, dict]]:
    """Yield (`file:line`, object) for each non-blank line of a JSONL file; raise
    `PromptFileError` naming the file and line for anything that is not a JSON object.
    `what` names the file in messages ("prompt file"), `setting` the config field."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PromptFileError(f"{what} {path} does not exist (set {setting})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise PromptFileError(f"{path}:{line}: not valid UTF-8 (byte {err.start})") from None
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and friends unescaped.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise PromptFileError(f"{where}: not valid JSON ({err.msg})") from None
        if not isinstance(obj, dict):
            raise PromptFileError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        yield where, obj


def text_field(obj: dict, name: str, where: str) -> str:
    """The non-empty string field `name` of a JSONL object, or a `PromptFileError`."""
    if name not in obj:
        raise PromptFileError(f"{where}: missing field {name!r}")
    value = obj[name]
    if not isinstance(value, str) or not value.strip():
        raise PromptFileError(f"{where}: field {name!r} must be a non-empty string")
    return value


def load_prompts(path: str | Path, prompt_field: str = "prompt") -> PromptSet:
    """Read and check a JSONL prompt file."""
    rows: list[dict[str, str]] = []
    seen_ids: set[str] = set()
    seen_prompts: set[str] = set()
    dropped = {"duplicate_prompt": 0}
    for where, obj in read_jsonl(path, "prompt file", "data.prompts"):
        prompt = text_field(obj, prompt_field, where)
        prompt_id = str(obj.get("prompt_id", f"line{where.rsplit(':', 1)[1]}"))
        if prompt_id in seen_ids:
            raise PromptFileError(f"{where}: duplicate prompt_id {prompt_id!r}")
        seen_ids.add(prompt_id)
        if prompt in seen_prompts:
            dropped["duplicate_prompt"] += 1
            continue
        seen_prompts.add(prompt)
        rows.append({"prompt_id": prompt_id, "prompt": prompt})
    if not rows:
        raise PromptFileError(f"prompt file {path} holds no prompts")
    return PromptSet(rows, dropped)


def iteration_chunk(rows: list[dict[str, str]], iteration: int, size: int) -> list[dict[str, str]]:
    """The prompts of one iteration: consecutive chunks in file order, wrapping around when
    the file is shorter than iterations x size (each prompt appears at most once a chunk)."""
    size = min(size, len(rows))
    start = iteration * size
    return [rows[(start + offset) % len(rows)] for offset in range(size)]
