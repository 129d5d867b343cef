"""The run's three inputs, read and checked before any model work: the training prompts
(`data.prompts`), the SFT examples (`sft.data`) and the held-out evaluation prompts
(`eval.prompts`).

In:  `DataSource`s (or plain paths) of any table tables.py reads, rows of either shape
     shapes.py reads.
Out: prompt rows {prompt_id, prompt, system}; SFT rows {source, prompt, response, system};
     evaluation rows with every field their table has besides. Errors name the file, row
     and field.
A row's `prompt_id` is its own id field (`prompt_id` by default), else its place: `line<N>` in
a JSONL file (as before sources had formats), `row<N>` elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from temporal_ray.config.inputs import DataSource, as_source
from temporal_ray.core.prompts import PromptFileError, PromptSet
from temporal_ray.inputs.shapes import read_turn
from temporal_ray.inputs.tables import read_records


def load_prompts(source: str | DataSource, prompt_field: str | None = None) -> PromptSet:
    """The training prompts: ids unique, the same (system, prompt) kept once (counted)."""
    rows: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    dropped = {"duplicate_prompt": 0}
    source = as_source(source, prompt_field)
    for where, row, prompt_id in _identified(source, "prompt file", "data.prompts"):
        turn = read_turn(row, source, where, with_response=False)
        if (turn.system, turn.prompt) in seen:
            dropped["duplicate_prompt"] += 1
            continue
        seen.add((turn.system, turn.prompt))
        rows.append({"prompt_id": prompt_id, "prompt": turn.prompt, "system": turn.system})
    if not rows:
        raise PromptFileError(f"prompt file {source.path} holds no prompts")
    return PromptSet(rows, dropped)


def load_sft_rows(sources: Sequence[str | DataSource]) -> list[dict[str, str]]:
    """Every example of the SFT sources, in order."""
    if not sources:
        raise PromptFileError("no SFT data: set sft.data to one or more files or datasets")
    rows = []
    for given in sources:
        source = as_source(given)
        before = len(rows)
        for where, row in read_records(source, "SFT data file", "sft.data"):
            turn = read_turn(row, source, where, with_response=True)
            rows.append({"source": source.path, "prompt": turn.prompt,
                         "response": str(turn.response), "system": turn.system})
        if len(rows) == before:
            raise PromptFileError(f"SFT data file {source.path} holds no examples")
    return rows


def load_eval_prompts(source: str | DataSource | None, prompt_field: str | None = None,
                      max_prompts: int | None = None) -> list[dict[str, Any]]:
    """The held-out prompts, each with every field its row has (a rule judge may read them)."""
    if not source:
        raise PromptFileError("eval.prompts is not set: point it to held-out prompts (a JSONL "
                              "file of {\"prompt\": ...} objects, Parquet, or a dataset)")
    source = as_source(source, prompt_field)
    rows = []
    for where, row, prompt_id in _identified(source, "eval prompt file", "eval.prompts"):
        turn = read_turn(row, source, where, with_response=False)
        rows.append({**row, "prompt": turn.prompt, "system": turn.system,
                     "prompt_id": prompt_id})
        if max_prompts and len(rows) == max_prompts:
            break
    if not rows:
        raise PromptFileError(f"eval prompt file {source.path} holds no prompts")
    return rows


def _identified(source: DataSource, what: str,
                setting: str) -> Iterator[tuple[str, dict[str, Any], str]]:
    """(where, row, prompt_id) for each row; a prompt_id seen before is refused."""
    seen: set[str] = set()
    for index, (where, row) in enumerate(read_records(source, what, setting)):
        if row.get(source.id_field) is not None:
            prompt_id = str(row[source.id_field])
        elif where.rsplit(":", 1)[-1].isdigit():  # a JSONL file: its line number
            prompt_id = f"line{where.rsplit(':', 1)[1]}"
        else:
            prompt_id = f"row{index}"
        if prompt_id in seen:
            raise PromptFileError(f"{where}: duplicate prompt_id {prompt_id!r}")
        seen.add(prompt_id)
        yield where, row, prompt_id
