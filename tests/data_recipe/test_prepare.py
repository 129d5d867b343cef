"""`temporal-ray prepare-data` end to end: published formats in, what `sft` and `run` read out;
a rerun is a no-op; a crash leaves no half directory."""

import gzip
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from temporal_ray import terminal
from temporal_ray.cli import main
from temporal_ray.core.prompts import iteration_chunk
from temporal_ray.inputs.load import load_prompts, load_sft_rows

SIZES = ["--ift-size", "10", "--eft-size", "24", "--iterations", "2",
         "--prompts-per-iteration", "30", "--progress", "off"]


@pytest.fixture(autouse=True)
def default_terminal():
    yield
    terminal.configure()


def prepare(oasst, ultrafeedback, out, *extra) -> int:
    return main(["prepare-data", "--oasst", str(oasst), "--ultrafeedback", str(ultrafeedback),
                 "--out", str(out), *SIZES, *extra])


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_the_output_is_what_sft_and_run_read_and_a_rerun_does_nothing(datasets, tmp_path,
                                                                      capsys):
    out = tmp_path / "recipe"
    assert prepare(datasets["oasst"], datasets["ultrafeedback"], out) == 0
    assert "10 IFT, 24 EFT, 60 prompts" in capsys.readouterr().out
    sft = load_sft_rows([str(out / "ift.jsonl"), str(out / "eft.jsonl")])
    assert len(sft) == 34 and sft[-1]["response"].split("\n")[-1].startswith("Score: ")
    prompts = load_prompts(out / "prompts.jsonl").rows
    for i in range(2):   # data.prompts_per_iteration=30 cuts the per-iteration files' chunks
        chunk = [{"prompt_id": r["prompt_id"], "prompt": r["prompt"], "system": ""}
                 for r in read(out / f"prompts-iter{i}.jsonl")]
        assert iteration_chunk(prompts, i, 30) == chunk
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"]["ift_by_source"] == {"oasst": 2, "ultrafeedback": 8}
    assert manifest["dropped"]["oasst.prompt_not_en"] == 1
    assert manifest["options"]["eft_size"] == 24 and manifest["files"]["eft.jsonl"]["rows"] == 24
    files = [f["name"] for f in manifest["inputs"]["ultrafeedback"][0]["files"]]
    assert files == ["flan.jsonl", "sharegpt.jsonl"]   # the download cache is not an input
    oasst = manifest["inputs"]["oasst"][0]["files"]   # the files read: not the README
    assert [f["name"] for f in oasst] == ["data/train-00000-of-00001.parquet",
                                          "data/validation-00000-of-00001.parquet"]
    assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in oasst)

    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    terminal.configure("INFO")
    assert prepare(datasets["oasst"], datasets["ultrafeedback"], out) == 0
    assert "nothing to do" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before

    assert prepare(datasets["oasst"], datasets["ultrafeedback"], out, "--seed", "1") == 2
    assert "pass --force to replace it" in capsys.readouterr().err
    assert prepare(datasets["oasst"], datasets["ultrafeedback"], out, "--seed", "1",
                   "--force") == 0
    assert json.loads((out / "manifest.json").read_text())["options"]["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["oasst1", "recipe", "ultrafeedback"]


def test_jsonl_and_parquet_inputs_give_the_same_rows(datasets, tmp_path, parquet_file):
    assert prepare(datasets["oasst"], datasets["ultrafeedback"], tmp_path / "a") == 0
    oasst = tmp_path / "oasst-ready.messages.jsonl.gz"
    rows = [r for p in sorted((datasets["oasst"] / "data").glob("*.parquet"))
            for r in pq.read_table(p).to_pylist()]
    with gzip.open(oasst, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    uf = tmp_path / "uf-parquet"
    for name in ("flan", "sharegpt"):
        parquet_file(uf / f"{name}.parquet", read(datasets["ultrafeedback"] / f"{name}.jsonl"))
    assert prepare(oasst, uf, tmp_path / "b") == 0
    for name in ("ift.jsonl", "eft.jsonl", "prompts.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_a_save_to_disk_dataset_is_read_as_one_table(datasets, tmp_path):
    import datasets as hf

    assert prepare(datasets["oasst"], datasets["ultrafeedback"], tmp_path / "a") == 0
    rows = [r for name in ("flan", "sharegpt")
            for r in read(datasets["ultrafeedback"] / f"{name}.jsonl")]
    hf.Dataset.from_list(rows).save_to_disk(str(tmp_path / "uf-saved"))
    assert prepare(datasets["oasst"], tmp_path / "uf-saved", tmp_path / "b") == 0
    for name in ("ift.jsonl", "eft.jsonl", "prompts.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_a_bad_row_stops_with_its_file_row_and_field(datasets, tmp_path, capsys):
    broken = datasets["ultrafeedback"] / "sharegpt.jsonl"
    lines = broken.read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[2])
    row["completions"][1]["annotations"] = "4 stars"
    lines[2] = json.dumps(row)
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert prepare(datasets["oasst"], datasets["ultrafeedback"], tmp_path / "out") == 2
    assert (f"error: {broken}:3: completions[1]: field 'annotations' must be an object"
            in capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


@pytest.mark.chaos
def test_a_crash_while_writing_leaves_no_half_output_and_keeps_the_old(datasets, tmp_path,
                                                                      monkeypatch,
                                                                      chaos_record):
    out = tmp_path / "recipe"
    assert prepare(datasets["oasst"], datasets["ultrafeedback"], out) == 0
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    written = []
    real_write = Path.write_text

    def crash_on_third_file(self, *args, **kwargs):
        written.append(self.name)
        if len(written) == 3:
            raise OSError(28, "No space left on device")
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", crash_on_third_file)
    assert prepare(datasets["oasst"], datasets["ultrafeedback"], out, "--seed", "2",
                   "--force") == 2
    monkeypatch.undo()
    kept = {p.name: p.read_bytes() for p in out.iterdir()} == old
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".recipe")]
    chaos_record("disk full while prepare-data writes its directory", 1, kept,
                 0 if kept else len(old))
    assert kept and leftovers == []
    assert prepare(datasets["oasst"], datasets["ultrafeedback"], out, "--seed", "2",
                   "--force") == 0
