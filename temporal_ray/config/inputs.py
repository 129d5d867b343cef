"""Where a run's text data comes from: `DataSource`, the one shape of `data.prompts`,
`sft.data` and `eval.prompts`.

A plain string is a `DataSource` with that path and the defaults below, so the configs written
before sources had fields of their own mean what they meant.
"""

from __future__ import annotations

import os
from typing import Literal

from temporal_ray.config.base import Section

SourceFormat = Literal["auto", "jsonl", "json", "parquet", "hf_disk", "hf"]


class DataSource(Section):
    """A table of prompts (or prompt-response examples) in any format users already have."""

    path: str
    """A JSONL, JSON (a list of objects) or Parquet file, local or any URI pyarrow opens
    (s3://, gs://, ...); a directory written by `datasets.save_to_disk`; a local directory of
    data files `datasets.load_dataset` reads; or a Hugging Face Hub dataset name (online)."""
    format: SourceFormat = "auto"
    """`auto` tells by the path: .jsonl/.json/.parquet (optionally .gz for JSON), a
    save_to_disk directory, another directory (load_dataset), else a Hub name. `hf` always
    goes through `datasets.load_dataset`."""
    split: str = "train"
    """The split of a Hugging Face dataset (a save_to_disk DatasetDict, load_dataset)."""
    subset: str | None = None
    """The configuration name of a Hub dataset (load_dataset's `name`)."""
    prompt_field: str = "prompt"
    """Plain rows: the field that holds the prompt (the user's instruction)."""
    response_field: str = "response"
    """Plain SFT rows: the field that holds the answer."""
    system_field: str = "system"
    """Plain rows: an optional field with a system prompt (kept where a row has one)."""
    id_field: str = "prompt_id"
    """An optional field with each prompt's id (ids seed the sampling); a row without it is
    named by its place: `line<N>` in a JSONL file, `row<N>` elsewhere."""
    messages_field: str = "messages"
    """Chat rows: a list of {role, content}, an optional system message first, then one user
    turn (and, for SFT, the assistant's answer). A row with this field is read as chat."""


def as_source(value: str | os.PathLike | DataSource,
              prompt_field: str | None = None) -> DataSource:
    """`value` as a `DataSource`; a plain path takes `prompt_field` (a section's older field)
    when given."""
    if isinstance(value, DataSource):
        return value
    return DataSource(path=os.fspath(value),
                      **({"prompt_field": prompt_field} if prompt_field else {}))
