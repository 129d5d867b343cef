"""Integrity of finished stages: a rerun redoes a stage whose Parquet file was truncated,
changed in place or deleted, names the stage and the file, and redoes the stages after it."""

import json

import pytest
from pyarrow import fs as pafs

from temporal_ray.storage.files import read_rows, write_rows
from temporal_ray.storage.integrity import check_files, record_files
from temporal_ray.storage.run_dir import RunDir

STAGES = ["iter_0/prompts", "iter_0/candidates", "iter_0/pairs"]


def build(run: RunDir, calls: list[str]) -> dict[str, str]:
    """Three stages, each a Parquet file built from the one before (as an iteration's are)."""
    paths: dict[str, str] = {}
    rows = [{"prompt": f"p{i}", "n": i} for i in range(50)]
    for stage in STAGES:
        def produce(tmp: str, stage: str = stage, source: list = rows) -> dict[str, int]:
            calls.append(stage)
            write_rows([{**row, "stage": stage} for row in source],
                       f"{tmp}/data/rows.parquet")
            return {"rows": len(source)}
        paths[stage] = run.run_stage(stage, produce, kind="test").path
        rows = read_rows(f"{paths[stage]}/data")
    return paths


def data_file(root, stage: str):
    return root / stage / "data" / "rows.parquet"


@pytest.fixture
def finished_run(tmp_path):
    build(RunDir(str(tmp_path)), [])
    return tmp_path


def test_the_manifest_records_each_file_size_and_sha256(finished_run):
    manifest = json.loads((finished_run / "iter_0/pairs/manifest.json").read_text())
    record = manifest["files"]["data/rows.parquet"]
    assert record["size"] == data_file(finished_run, "iter_0/pairs").stat().st_size
    assert len(record["sha256"]) == 64
    assert list(manifest["files"]) == ["data/rows.parquet"]  # the manifest is not in it
    # ... and is kept out of the manifest that is logged and summarised
    assert "files" not in RunDir(str(finished_run)).finished("iter_0/pairs").manifest


def test_an_untouched_run_reuses_every_stage(finished_run):
    calls: list[str] = []
    build(RunDir(str(finished_run)), calls)
    assert calls == []


def truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_a_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, message", [
    (truncate, "bytes, the manifest says"),
    (flip_a_byte, "another SHA-256"),
    (lambda path: path.unlink(), "is missing"),
])
def test_a_damaged_stage_is_redone_with_the_stages_after_it(finished_run, caplog, damage,
                                                            message):
    finished_at = {s: json.loads((finished_run / s / "manifest.json").read_text())
                   ["finished_at"] for s in STAGES}
    damage(data_file(finished_run, "iter_0/candidates"))
    calls: list[str] = []
    build(RunDir(str(finished_run)), calls)

    assert calls == ["iter_0/candidates", "iter_0/pairs"]  # iter_0/prompts is reused
    (line,) = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
    assert line.startswith("stage iter_0/candidates is damaged: data/rows.parquet ")
    assert message in line and line.endswith("stages finished after it: iter_0/pairs")
    for stage in STAGES:
        now = json.loads((finished_run / stage / "manifest.json").read_text())["finished_at"]
        assert (now == finished_at[stage]) == (stage == "iter_0/prompts")
    assert len(read_rows(str(finished_run / "iter_0/pairs/data"))) == 50
    calls.clear()
    build(RunDir(str(finished_run)), calls)
    assert calls == []  # redone once, then reused


def test_the_later_stages_are_deleted_at_once_so_a_crash_cannot_revive_them(finished_run):
    truncate(data_file(finished_run, "iter_0/prompts"))
    run = RunDir(str(finished_run))
    assert run.reusable("iter_0/prompts") is None
    assert run.own_stages() == {}  # a rerun that stopped here redoes all three
    assert [p.name for p in (finished_run / "iter_0").iterdir()] == []


def test_size_mode_reads_no_file(finished_run, monkeypatch):
    flip_a_byte(data_file(finished_run, "iter_0/pairs"))
    monkeypatch.setenv("TEMPORAL_RAY_VERIFY", "size")
    assert RunDir(str(finished_run)).reusable("iter_0/pairs") is not None  # same size
    truncate(data_file(finished_run, "iter_0/pairs"))
    assert RunDir(str(finished_run)).reusable("iter_0/pairs") is None


def test_a_manifest_written_before_files_were_recorded_is_trusted(finished_run):
    for stage in STAGES:
        path = finished_run / stage / "manifest.json"
        manifest = json.loads(path.read_text())
        del manifest["files"]
        path.write_text(json.dumps(manifest))
    truncate(data_file(finished_run, "iter_0/candidates"))
    calls: list[str] = []
    run = RunDir(str(finished_run))
    for stage in STAGES:
        assert run.run_stage(stage, lambda tmp, s=stage: calls.append(s) or {}).reused
    assert calls == []


def test_a_nested_run_directory_keeps_its_stages(tmp_path, caplog):
    outer = RunDir(str(tmp_path))
    outer.run_stage("data", lambda tmp: write_rows([{"a": 1}], f"{tmp}/x.parquet") or {})
    inner = RunDir(str(tmp_path / "method"))  # a miniature's method run, under its own lock
    inner.run_stage("iter_0/pairs", lambda tmp: write_rows([{"a": 1}], f"{tmp}/x.parquet")
                    or {})
    outer.run_stage("later", lambda tmp: {})
    assert set(outer.own_stages()) == {"data", "later"}
    truncate(tmp_path / "data" / "x.parquet")
    calls: list[str] = []
    RunDir(str(tmp_path)).run_stage("data", lambda tmp: calls.append("data") or {})
    assert calls == ["data"]
    assert "stages finished after it: later" in caplog.text
    assert RunDir(str(tmp_path / "method")).finished("iter_0/pairs") is not None


def test_records_and_checks_go_through_any_pyarrow_filesystem():
    fs = pafs._MockFileSystem()
    fs.create_dir("stage/model")
    with fs.open_output_stream("stage/model/weights.safetensors") as out:
        out.write(b"\0" * (20 << 20))  # more than one chunk
    with fs.open_output_stream("stage/manifest.json") as out:
        out.write(b"{}")
    files = record_files(fs, "stage", skip=("manifest.json",))
    assert list(files) == ["model/weights.safetensors"]
    assert files["model/weights.safetensors"]["size"] == 20 << 20
    assert check_files(fs, "stage", files) is None
    with fs.open_output_stream("stage/model/weights.safetensors") as out:
        out.write(b"\1" * (20 << 20))
    damage = check_files(fs, "stage", files)
    assert damage is not None and damage.file == "model/weights.safetensors"
