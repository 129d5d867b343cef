"""Rows in, from any table users already have: JSONL, JSON, Parquet (local or any URI pyarrow
opens) and Hugging Face datasets (save_to_disk directories, local data files, Hub names).

In:  a `DataSource` (config/inputs.py).
Out: (where, row) pairs in table order; `where` names the file and line ("a.jsonl:12") or the
     table and row ("a.parquet row 11", 0-based like the table's own index), for errors.
A table that cannot be read raises `PromptFileError` naming it and what to do.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyarrow import fs as pafs

from temporal_ray.config.inputs import DataSource
from temporal_ray.core.prompts import PromptFileError
from temporal_ray.storage.files import resolve

Record = tuple[str, dict[str, Any]]
_PARQUET_BATCH = 1024
_BLOCK = 1 << 20


def read_records(source: DataSource, what: str, setting: str) -> Iterator[Record]:
    """Every row of `source`. `what` names the table in messages ("prompt file"), `setting`
    the config field that points at it ("data.prompts")."""
    kind = table_format(source)
    if kind == "jsonl":
        return _read_jsonl(source.path, what, setting)
    if kind == "json":
        return _read_json_list(source.path, what, setting)
    if kind == "parquet":
        return _read_parquet(source.path, what, setting)
    return _read_hf(source, kind, what, setting)


def table_format(source: DataSource) -> str:
    """The source's format: its own `format`, or what its path says."""
    if source.format != "auto":
        return source.format
    name = source.path.rstrip("/").lower().removesuffix(".gz")
    for suffix, kind in ((".jsonl", "jsonl"), (".json", "json"), (".parquet", "parquet")):
        if name.endswith(suffix):
            return kind
    local = Path(source.path)
    if "://" in source.path or local.is_file():
        raise PromptFileError(f"{source.path}: cannot tell the format from the name; set "
                              "format (jsonl, json, parquet, hf_disk or hf)")
    if local.is_dir():
        saved = any((local / marker).is_file()
                    for marker in ("dataset_info.json", "state.json", "dataset_dict.json"))
        return "hf_disk" if saved else "hf"
    return "hf"  # a Hub name, or a path that does not exist (load_dataset says which)


def _open(path: str, what: str, setting: str) -> Any:
    """A stream of the file's bytes (a .gz file decompressed on the way)."""
    filesystem, where = resolve(path)
    if filesystem.get_file_info(where).type == pafs.FileType.NotFound:
        raise PromptFileError(f"{what} {path} does not exist (set {setting})")
    return filesystem.open_input_stream(where)


def _lines(stream: Any) -> Iterator[bytes]:
    """The stream's lines, read a block at a time: a file of any size in little memory."""
    pending = b""
    while block := stream.read(_BLOCK):
        *complete, pending = (pending + block).split(b"\n")
        yield from complete
    if pending:
        yield pending


def _read_jsonl(path: str, what: str, setting: str) -> Iterator[Record]:
    """(`file:line`, object) for each non-blank line; anything but a JSON object is refused
    naming the file and line."""
    # Lines split on b"\n" only: JSON strings may hold U+2028 and friends unescaped.
    with _open(path, what, setting) as stream:
        for number, raw in enumerate(_lines(stream), start=1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8").rstrip("\r")
            except UnicodeDecodeError as err:
                raise PromptFileError(f"{where}: not valid UTF-8 (byte {err.start} of the "
                                      "line)") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise PromptFileError(f"{where}: not valid JSON ({err.msg})") from None
            if not isinstance(obj, dict):
                raise PromptFileError(f"{where}: expected a JSON object, got "
                                      f"{type(obj).__name__}")
            yield where, obj


def _read_json_list(path: str, what: str, setting: str) -> Iterator[Record]:
    """A JSON file holding one list of objects (AlpacaEval's eval set is one)."""
    with _open(path, what, setting) as stream:
        raw = stream.read()
    try:
        rows = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise PromptFileError(f"{path}:{line}: not valid UTF-8") from None
    except json.JSONDecodeError as err:
        raise PromptFileError(f"{path}:{err.lineno}: not valid JSON ({err.msg}); a file of "
                              "one object per line should be named .jsonl") from None
    if not isinstance(rows, list):
        raise PromptFileError(f"{path}: expected a JSON list of objects, got "
                              f"{type(rows).__name__}")
    for index, obj in enumerate(rows):
        if not isinstance(obj, dict):
            raise PromptFileError(f"{path} item {index}: expected a JSON object, got "
                                  f"{type(obj).__name__}")
        yield f"{path} item {index}", obj


def _read_parquet(path: str, what: str, setting: str) -> Iterator[Record]:
    import pyarrow.parquet as pq

    filesystem, where = resolve(path)
    if filesystem.get_file_info(where).type == pafs.FileType.NotFound:
        raise PromptFileError(f"{what} {path} does not exist (set {setting})")
    try:
        table = pq.ParquetFile(filesystem.open_input_file(where))
    except Exception as err:  # pyarrow's errors name no file
        raise PromptFileError(f"{path}: not a readable Parquet file ({err})") from None
    index = 0
    for batch in table.iter_batches(batch_size=_PARQUET_BATCH):
        for row in batch.to_pylist():
            yield f"{path} row {index}", row
            index += 1


def _read_hf(source: DataSource, kind: str, what: str, setting: str) -> Iterator[Record]:
    dataset = open_hf_dataset(source, kind, what, setting)
    name = f"{source.path}[{source.split}]"
    for index, row in enumerate(dataset):
        yield f"{name} row {index}", row


def open_hf_dataset(source: DataSource, kind: str, what: str, setting: str) -> Any:
    """The source's split as a `datasets.Dataset`: load_from_disk for a save_to_disk
    directory, load_dataset for local data files or a Hub name."""
    import datasets

    try:
        if kind == "hf_disk":
            loaded = datasets.load_from_disk(source.path)
        else:
            loaded = datasets.load_dataset(source.path, source.subset, split=source.split)
    except (FileNotFoundError, ConnectionError, ValueError) as err:
        raise PromptFileError(
            f"{what} {source.path} ({setting}) could not be loaded: it is not a file or "
            f"dataset directory here, nor a Hub dataset this machine reaches ({err}). "
            "Offline, save the dataset with save_to_disk or export it to Parquet where "
            "there is internet, and point the config at that.") from None
    if isinstance(loaded, datasets.DatasetDict):
        if source.split not in loaded:
            raise PromptFileError(f"{what} {source.path} has no split {source.split!r} (it has "
                                  f"{', '.join(loaded)}): set the source's split")
        loaded = loaded[source.split]
    return loaded
