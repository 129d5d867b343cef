"""The prompts of a run: the error every unusable input raises, the checked prompt set, and
each iteration's chunk of it.

Reading prompts from files and datasets is temporal_ray/inputs/'s job; this module is pure:
it knows nothing of files, Ray or models.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class PromptFileError(ValueError):
    """An input table cannot be used; the message names the file, row and field."""


@dataclass
class PromptSet:
    rows: list[dict[str, str]]
    """{prompt_id, prompt, system}, in table order."""
    dropped: dict[str, int] = field(default_factory=dict)


def iteration_chunk(rows: list[dict[str, str]], iteration: int, size: int) -> list[dict[str, str]]:
    """The prompts of one iteration: consecutive chunks in file order, wrapping around when
    the file is shorter than iterations x size (each prompt appears at most once a chunk)."""
    size = min(size, len(rows))
    start = iteration * size
    return [rows[(start + offset) % len(rows)] for offset in range(size)]
