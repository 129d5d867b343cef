"""Prompts in: read the JSONL prompt file, refuse bad lines by name, cut per-iteration chunks.

In:  a JSONL file, one object per line with the prompt text (field `prompt` by default) and an
     optional `prompt_id`.
Out: rows {prompt_id, prompt}. Problems that make the file unusable raise `PromptFileError`
     naming the file, line and field; duplicate prompts are dropped and counted.
This module is pure: it knows nothing of Ray or models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


class PromptFileError(ValueError):
    """The prompt file cannot be used; the message names the file, line and field."""


@dataclass
class PromptSet:
    rows: list[dict[str, str]]
    dropped: dict[str, int] = field(default_factory=dict)


def load_prompts(path: str | Path, prompt_field: str = "prompt") -> PromptSet:
    """Read and check a JSONL prompt file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PromptFileError(f"prompt file {path} does not exist (set data.prompts)") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise PromptFileError(f"{path}:{line}: not valid UTF-8 (byte {err.start})") from None

    rows: list[dict[str, str]] = []
    seen_ids: set[str] = set()
    seen_prompts: set[str] = set()
    dropped = {"duplicate_prompt": 0}
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
        if prompt_field not in obj:
            raise PromptFileError(f"{where}: missing field {prompt_field!r}")
        prompt = obj[prompt_field]
        if not isinstance(prompt, str) or not prompt.strip():
            raise PromptFileError(f"{where}: field {prompt_field!r} must be a non-empty string")
        prompt_id = str(obj.get("prompt_id", f"line{number}"))
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
