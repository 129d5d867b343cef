"""Rows of a dataset file or directory: JSONL (.jsonl, .jsonl.gz) and Parquet.

A stop-gap until the shared reader (temporal_ray/inputs) lands: `read_records(path)` yields
(where, row) with `where` naming the file and row. A directory is read file by file in sorted
order (what `hf download --local-dir` leaves: data/train-*.parquet, *.jsonl); other files in it
(README.md, .gitattributes, the download cache) are skipped.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from temporal_ray.data_recipe.errors import DataRecipeError

SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")


def data_files(path: str | Path) -> list[Path]:
    """The data files at `path` (itself, or those under a directory), in sorted order."""
    path = Path(path)
    if not path.exists():
        raise DataRecipeError(f"{path} does not exist: give a downloaded dataset's file or "
                              "directory")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES)
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise DataRecipeError(f"{path} holds no {', '.join(SUFFIXES)} files")
    return files


def read_records(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, row) for every row of the data files at `path`."""
    for file in data_files(path):
        if file.name.endswith(".parquet"):
            yield from _parquet(file)
        elif file.name.endswith((".jsonl", ".jsonl.gz")):
            yield from _jsonl(file)
        else:
            raise DataRecipeError(f"{file}: not a {', '.join(SUFFIXES)} file")


def _jsonl(file: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    opener = gzip.open if file.name.endswith(".gz") else open
    with opener(file, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{file}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataRecipeError(f"{where}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise DataRecipeError(f"{where}: expected a JSON object, got "
                                      f"{type(row).__name__}")
            yield where, row


def _parquet(file: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    import pyarrow.parquet as pq

    index = 0
    for batch in pq.ParquetFile(file).iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            index += 1
            yield f"{file} row {index}", row
