"""temporal_ray.inputs.tables: every table format reads the same rows, and names a bad row by
its file and place."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from temporal_ray.config import DataSource
from temporal_ray.core.prompts import PromptFileError
from temporal_ray.inputs.load import load_prompts, load_sft_rows
from temporal_ray.inputs.tables import read_records, table_format

# Every row names every field: pyarrow and datasets take a table's columns from its first row.
ROWS = [{"prompt": "Name a colour.", "response": "Blue.", "system": None},
        {"prompt": "Two plus two?", "response": "Four.", "system": "Be terse."}]


def rows_of(source: DataSource) -> list[dict]:
    return [row for _, row in read_records(source, "test table", "data.prompts")]


def write_parquet(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_jsonl_gzipped_jsonl_json_list_and_parquet_read_the_same_rows(tmp_path):
    lines = "".join(json.dumps(r) + "\n" for r in ROWS)
    (tmp_path / "a.jsonl").write_text(lines)
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(lines.encode()))
    (tmp_path / "a.json").write_text(json.dumps(ROWS))
    write_parquet(tmp_path / "a.parquet", ROWS)
    for name in ("a.jsonl", "a.jsonl.gz", "a.json", "a.parquet"):
        got = rows_of(DataSource(path=str(tmp_path / name)))
        assert got == ROWS, name


def test_a_uri_is_read_through_pyarrow(tmp_path):
    path = write_parquet(tmp_path / "p.parquet", ROWS)
    assert len(rows_of(DataSource(path=f"file://{path}"))) == 2


def test_places_name_the_line_row_or_item(tmp_path):
    write_parquet(tmp_path / "p.parquet", [{"prompt": "ok"}, {"prompt": ""}])
    with pytest.raises(PromptFileError, match=r"p\.parquet row 1: field 'prompt' must be"):
        load_prompts(str(tmp_path / "p.parquet"))
    (tmp_path / "l.json").write_text(json.dumps([{"prompt": "ok"}, 3]))
    with pytest.raises(PromptFileError, match=r"l\.json item 1: expected a JSON object"):
        load_prompts(str(tmp_path / "l.json"))
    (tmp_path / "o.json").write_text('{"prompt": "one object"}\n{"prompt": "two"}\n')
    with pytest.raises(PromptFileError, match=r"o\.json:2: not valid JSON .* named \.jsonl"):
        load_prompts(str(tmp_path / "o.json"))


def test_prompt_ids_default_to_the_row(tmp_path):
    write_parquet(tmp_path / "p.parquet", [{"prompt": "a", "prompt_id": None},
                                            {"prompt": "b", "prompt_id": "x"}])
    assert [r["prompt_id"] for r in load_prompts(str(tmp_path / "p.parquet")).rows] == \
        ["row0", "x"]


def test_unknown_suffix_and_missing_file_say_what_to_do(tmp_path):
    (tmp_path / "data.csv").write_text("prompt\nhello\n")
    with pytest.raises(PromptFileError, match="set format"):
        table_format(DataSource(path=str(tmp_path / "data.csv")))
    with pytest.raises(PromptFileError, match=r"does not exist \(set data.prompts\)"):
        load_prompts(str(tmp_path / "absent.parquet"))
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(PromptFileError, match="broken.parquet: not a readable Parquet file"):
        load_prompts(str(tmp_path / "broken.parquet"))


def test_a_saved_dataset_and_its_splits(tmp_path):
    import datasets

    saved = datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS),
                                  "test": datasets.Dataset.from_list(ROWS[:1])})
    saved.save_to_disk(str(tmp_path / "saved"))
    source = DataSource(path=str(tmp_path / "saved"))
    assert table_format(source) == "hf_disk"
    assert [r["prompt"] for r in load_sft_rows([source])] == [r["prompt"] for r in ROWS]
    assert len(load_sft_rows([source.model_copy(update={"split": "test"})])) == 1
    with pytest.raises(PromptFileError, match=r"has no split 'validation' \(it has train, test\)"):
        load_sft_rows([source.model_copy(update={"split": "validation"})])
    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "one"))
    rows = load_sft_rows([str(tmp_path / "one")])
    assert rows[1]["system"] == "Be terse." and rows[0]["system"] == ""
    assert rows[1]["source"] == str(tmp_path / "one")


def test_local_data_files_through_load_dataset(tmp_path):
    """A dataset as the Hub lays it out (data/<split>-*.parquet), read by load_dataset."""
    (tmp_path / "hub_layout" / "data").mkdir(parents=True)
    write_parquet(tmp_path / "hub_layout" / "data" / "train-00000-of-00001.parquet", ROWS)
    source = DataSource(path=str(tmp_path / "hub_layout"))
    assert table_format(source) == "hf"
    assert [r["response"] for r in load_sft_rows([source])] == ["Blue.", "Four."]


def test_a_hub_name_offline_says_what_to_do():
    # tests/conftest.py sets HF_HUB_OFFLINE: the hub client fails at once, without retries.
    with pytest.raises(PromptFileError, match="could not be loaded.*Offline"):
        load_prompts(DataSource(path="nobody/no-such-dataset"))
