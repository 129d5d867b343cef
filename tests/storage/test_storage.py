"""Atomic stages on the local filesystem: finished means renamed into place with a manifest."""

import json

import pytest

from temporal_ray.storage.files import count_rows, read_rows, write_rows
from temporal_ray.storage.run_dir import RunDir


def test_stage_is_published_with_manifest_and_counts(tmp_path):
    run = RunDir(str(tmp_path / "run"))

    def produce(tmp):
        write_rows([{"a": 1}, {"a": 2}], f"{tmp}/data/x.parquet")
        return {"rows": 2}

    result = run.run_stage("iter_0/thing", produce, kind="test")
    assert not result.reused
    stage = tmp_path / "run" / "iter_0" / "thing"
    manifest = json.loads((stage / "manifest.json").read_text())
    assert manifest["rows"] == 2 and manifest["kind"] == "test"
    assert manifest["seconds"] >= 0
    assert read_rows(str(stage / "data")) == [{"a": 1}, {"a": 2}]
    assert [p.name for p in (tmp_path / "run" / "iter_0").iterdir()] == ["thing"]


def test_finished_stage_is_not_run_again(tmp_path):
    run = RunDir(str(tmp_path))
    calls = []

    def produce(tmp):
        calls.append(tmp)
        return {"rows": 0}

    run.run_stage("s", produce)
    again = run.run_stage("s", produce)
    assert len(calls) == 1
    assert again.reused


@pytest.mark.chaos
def test_crash_leaves_no_stage_and_the_rerun_redoes_it(tmp_path, chaos_record):
    run = RunDir(str(tmp_path))

    def crash(tmp):
        write_rows([{"a": 1}], f"{tmp}/data/x.parquet")
        raise RuntimeError("killed mid-stage")

    with pytest.raises(RuntimeError):
        run.run_stage("s", crash)
    assert run.finished("s") is None
    assert not (tmp_path / "s").exists()
    assert any(p.name.startswith("s.tmp-") for p in tmp_path.iterdir())

    result = run.run_stage("s", lambda tmp: {"rows": 1})
    chaos_record("crash between data files and manifest", 1, not result.reused,
                 1 - result.manifest["rows"])
    assert not result.reused
    # the leftover temporary directory of the crashed attempt is cleaned up
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


def test_directory_without_manifest_is_unfinished(tmp_path):
    run = RunDir(str(tmp_path))
    (tmp_path / "s" / "data").mkdir(parents=True)  # files written, manifest never was
    assert run.finished("s") is None
    result = run.run_stage("s", lambda tmp: {"rows": 3})
    assert not result.reused and result.manifest["rows"] == 3


def test_write_text_is_atomic_and_readable(tmp_path):
    run = RunDir(str(tmp_path))
    run.write_text("config.yaml", "a: 1\n")
    run.write_text("config.yaml", "a: 2\n")
    assert run.read_text("config.yaml") == "a: 2\n"
    assert run.read_text("missing.txt") is None
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


def test_discard_from_deletes_a_stage_and_everything_after_it(tmp_path):
    from temporal_ray.storage.run_dir import UnknownStageError

    run = RunDir(str(tmp_path))
    for stage in ("iter_0/a", "iter_0/b", "iter_0/c", "iter_1/a"):
        run.run_stage(stage, lambda tmp: {})
    run.run_stage("iter_1/b.tmp-dead", lambda tmp: {})  # a leftover is not a stage
    assert list(run.finished_stages()) == ["iter_0/a", "iter_0/b", "iter_0/c", "iter_1/a"]
    assert run.discard_from("iter_0/b") == ["iter_0/b", "iter_0/c", "iter_1/a"]
    assert list(run.finished_stages()) == ["iter_0/a"]
    with pytest.raises(UnknownStageError, match=r"cannot redo iter_0/b(.|\n)*finished: iter_0/a"):
        run.discard_from("iter_0/b")


def test_read_rows_unifies_a_column_that_is_all_null_in_one_file(tmp_path):
    """A judge stage where no candidate of one block got a score writes that file's score
    column as type null; reading the stage must still give every row."""
    write_rows([{"id": 1, "score": None, "scores": [None]}], str(tmp_path / "a.parquet"))
    write_rows([{"id": 2, "score": 4.5, "scores": [4.0, 5.0]}], str(tmp_path / "b.parquet"))
    rows = sorted(read_rows(str(tmp_path)), key=lambda r: r["id"])
    assert rows == [{"id": 1, "score": None, "scores": [None]},
                    {"id": 2, "score": 4.5, "scores": [4.0, 5.0]}]


def test_count_rows_reads_the_footers_of_files_and_directories(tmp_path):
    write_rows([{"id": i} for i in range(3)], str(tmp_path / "a" / "x.parquet"))
    write_rows([{"id": i} for i in range(4)], str(tmp_path / "a" / "y.parquet"))
    write_rows([{"id": 9}], str(tmp_path / "b.parquet"))
    assert count_rows(str(tmp_path / "a")) == 7
    assert count_rows([str(tmp_path / "a"), str(tmp_path / "b.parquet")]) == 8
