"""Which tables an input path stands for, read with the shared reader (inputs/tables.py).

A local directory of data files, what `hf download --local-dir` leaves (data/train-*.parquet
and data/validation-*.parquet for Open Assistant, one JSONL file per source for UltraFeedback),
is every one of its .parquet, .jsonl and .jsonl.gz files in sorted order, every split
included; the Hub's other files (README.md, .gitattributes, the hidden download cache) are not
read. Anything else (a file, a `save_to_disk` directory, a Hub dataset name) is one table, as
the shared reader opens it (a Hugging Face dataset: its "train" split).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from temporal_ray.config.inputs import DataSource
from temporal_ray.inputs.tables import Record, read_records, table_format

SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz")


def _files(root: Path, suffixes: tuple[str, ...] = ("",)) -> list[Path]:
    """The files under `root` whose names end in one of `suffixes`, hidden ones left out."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(suffixes)
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def tables(path: str) -> list[DataSource]:
    source = DataSource(path=path)
    root = Path(path)
    if root.is_dir() and table_format(source) == "hf":
        files = _files(root, SUFFIXES)
        if files:
            return [DataSource(path=str(f)) for f in files]
    return [source]


def input_files(path: str | Path) -> list[Path]:
    """The local files the rows of `path` come from, to fingerprint: the data files read, or
    every file of a save_to_disk directory; none for a Hub dataset's name."""
    root = Path(path)
    if root.is_file():
        return [root]
    if not root.is_dir():
        return []
    read = [Path(t.path) for t in tables(str(root))]
    return read if read != [root] else _files(root)


def read_input(path: str, what: str, option: str) -> Iterator[Record]:
    """(where, row) for every row of every table at `path`; `what` names the dataset in
    errors ("UltraFeedback"), `option` the command-line option that gave it."""
    for source in tables(path):
        yield from read_records(source, what, option)
