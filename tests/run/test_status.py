"""`temporal-ray status`: run directories built by hand (manifests, locks, a stage being
written by the real `RunDir.run_stage`), read back without a cluster."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest
import yaml

from temporal_ray.cli import main
from temporal_ray.run.iteration import PROMPTS
from temporal_ray.run.methods import METHODS
from temporal_ray.run.status import read_status
from temporal_ray.run.status_table import format_status
from temporal_ray.storage.files import write_rows
from temporal_ray.storage.lock import LOCK, RunLock
from temporal_ray.storage.progress import ProgressRecord, write_progress
from temporal_ray.storage.run_dir import MANIFEST, RunDir

NOW = float(int(time.time()))  # the CLI reads the clock: the test runs a few seconds later
SR = (PROMPTS, *METHODS["self_rewarding"].stages)


def method_run(path, method="self_rewarding", iterations=2, samples=4) -> RunDir:
    run = RunDir(str(path))
    run.write_text("config.yaml", yaml.safe_dump(
        {"method": {"name": method, "iterations": iterations},
         "generation": {"samples": samples}}))
    return run


def finish(run: RunDir, stage: str, seconds: float, at: float, **counts) -> None:
    run.write_text(f"{stage}/{MANIFEST}", json.dumps(
        {"stage": stage, **counts, "seconds": seconds, "finished_at": at}))


def lock(run: RunDir, beat: float, host: str | None = None, pid: int | None = None) -> None:
    run.write_text(LOCK, json.dumps({"host": host or socket.gethostname(),
                                     "pid": pid or os.getpid(), "token": "t", "beat": beat}))


def states(status, iteration):
    return [(s.name, s.state) for s in status.iterations[iteration].stages]


def finished_run(tmp_path) -> RunDir:
    run = method_run(tmp_path)
    for i in range(2):
        for k, name in enumerate(SR):
            finish(run, f"iter_{i}/{name}", seconds=1.0 + k, at=NOW - 100 + 10 * i + k)
    return run


def test_a_finished_run_lists_every_stage_with_its_seconds(tmp_path, capsys):
    run = finished_run(tmp_path)
    finish(run, "iter_0/collapse", seconds=0.5, at=NOW - 10)  # an analysis's stage
    run.write_text("summary.json", "{}")
    status = read_status(str(tmp_path), now=NOW)
    assert status.kind == "method" and status.state == "finished"
    assert status.method == "self_rewarding" and status.planned_iterations == 2
    assert [s.name for s in status.iterations[1].stages] == list(SR)
    extra = status.iterations[0].stages[-1]
    assert (extra.name, extra.expected, extra.seconds) == ("collapse", False, 0.5)
    assert [s.seconds for s in status.iterations[1].stages] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert status.seconds() == 2 * 15.0 + 0.5 and status.files == ["summary.json"]
    assert "10 of 10 stages finished" in status.reason

    assert main(["status", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{tmp_path}: FINISHED (method self_rewarding, 2 iterations")
    assert "collapse*" in out and "30.5 s in finished stages" in out
    assert any(line.split()[:4] == ["1", "model", "finished", "5.0"]
               for line in out.splitlines())


def test_a_running_run_shows_the_stage_being_written_and_its_progress(tmp_path, capsys):
    run = method_run(tmp_path)
    for k, name in enumerate(SR):
        finish(run, f"iter_0/{name}", seconds=2.0, at=time.time() - 60 + k, rows=3)
    seen = {}

    def produce(tmp: str) -> dict:
        # What status reads while iteration 1's generate stage is being written.
        write_rows([{"prompt_id": f"p{i}"} for i in range(5)], f"{tmp}/data/part-0.parquet")
        seen["status"] = read_status(str(tmp_path))
        seen["rc"] = main(["status", str(tmp_path)])
        return {"rows": 5}

    finish(run, "iter_1/prompts", seconds=0.1, at=time.time(), rows=3)
    with RunLock(run):
        run.run_stage("iter_1/candidates_present", produce)
    status = seen["status"]
    assert status.state == "running" and status.lock.pid == os.getpid()
    assert status.lock.stale is None and status.lock.age < 60
    assert states(status, 1) == [("prompts", "finished"), ("candidates_present", "running"),
                                 ("scores_present", "remaining"), ("pairs", "remaining"),
                                 ("model", "remaining")]
    running = status.iterations[1].stages[1]
    assert running.progress == "5 of 12 rows written"  # 3 prompts x 4 samples
    assert time.time() - 60 < running.started_at <= time.time()
    assert seen["rc"] == 0
    out = capsys.readouterr().out
    assert f"{tmp_path}: RUNNING" in out and "6 of 10 stages finished" in out
    assert "live" in out and "5 of 12 rows written" in out
    # Released: the lock is gone, stages remain -> stopped, resumable.
    after = read_status(str(tmp_path))
    assert after.state == "stopped" and after.lock is None
    assert states(after, 1)[1] == ("candidates_present", "finished")


def test_a_running_training_stage_shows_its_step_from_rank_zeros_record(tmp_path, capsys):
    run = method_run(tmp_path)
    for k, name in enumerate(SR[:-1]):
        finish(run, f"iter_0/{name}", seconds=2.0, at=time.time() - 60 + k, rows=3)
    seen = {}

    def train(tmp: str) -> dict:
        seen["before"] = read_status(str(tmp_path)).iterations[0].stages[-1].progress
        # What rank 0 keeps in the stage's directory: 3 of 10 steps in 30 s.
        now = time.time()
        write_progress(tmp, ProgressRecord("dpo", 3, 10, started=now - 30, updated=now))
        seen["during"] = read_status(str(tmp_path)).iterations[0].stages[-1].progress
        main(["status", str(tmp_path)])
        return {}

    with RunLock(run):
        run.run_stage("iter_0/model", train)
    assert seen["before"] == "training (progress unknown)"
    assert seen["during"] == "dpo step 3 of 10 (30%), about 70 s left"
    assert "dpo step 3 of 10 (30%)" in capsys.readouterr().out

    # An SFT's directory (stages, no iterations) shows its model stage's step too.
    sft = RunDir(str(tmp_path / "sft"))

    def sft_train(tmp: str) -> dict:
        write_progress(tmp, ProgressRecord("sft", 40, 376, started=1.0, updated=1.0))
        seen["sft"] = read_status(sft.uri).stages[0]
        return {}

    with RunLock(sft):
        sft.run_stage("model", sft_train)
    assert (seen["sft"].state, seen["sft"].progress) == ("running", "sft step 40 of 376 (11%)")


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("holder", ["dead_pid", "old_heartbeat"])
def test_a_crashed_run_has_a_stale_lock_and_an_interrupted_stage(tmp_path, holder, capsys):
    run = method_run(tmp_path, method="temporal", iterations=1)
    temporal = (PROMPTS, *METHODS["temporal"].stages)
    for k, name in enumerate(temporal[:5]):  # prompts ... pairs_anchored
        finish(run, f"iter_0/{name}", seconds=3.0, at=NOW - 500 + k)
    run.fs.create_dir(run.path(f"iter_0/{temporal[5]}.tmp-{int(NOW) - 400}-deadbeef"))
    if holder == "dead_pid":
        lock(run, beat=NOW - 5, pid=dead_pid())
    else:
        lock(run, beat=NOW - 300, host="another-host", pid=1)
    status = read_status(str(tmp_path), now=NOW)
    assert status.state == "crashed"
    assert "gone" in status.lock.stale if holder == "dead_pid" else "300 s" in status.lock.stale
    assert states(status, 0) == [(n, "finished") for n in temporal[:5]] + [
        ("model_future", "interrupted")] + [(n, "remaining") for n in temporal[6:]]
    assert status.iterations[0].stages[5].started_at == NOW - 400
    assert "5 of 10 stages finished" in status.reason

    assert main(["status", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["state"] == "crashed" and report["method"] == "temporal"
    assert report["iterations"][0]["stages"][5]["state"] == "interrupted"
    text = format_status(status)
    assert "CRASHED" in text and "stale" in text and "6 min 40 s ago" in text


def test_a_miniature_root_lists_its_parts_in_the_order_they_ran(tmp_path):
    root = RunDir(str(tmp_path))
    finish(root, "base_model", 4.0, NOW - 900)
    finish(root, "data", 0.1, NOW - 899)
    sft = RunDir(str(tmp_path / "sft"))
    sft.write_text("config.yaml", yaml.safe_dump({"sft": {"epochs": 1}}))
    finish(sft, "data", 0.1, NOW - 890)
    finish(sft, "model", 90.0, NOW - 800)
    finished_run(tmp_path / "self_rewarding")  # finished at NOW - 100 ...
    temporal = method_run(tmp_path / "temporal", method="temporal", iterations=2)
    finish(temporal, "iter_0/prompts", 0.0, NOW - 50)  # then stopped, no lock
    (tmp_path / "self_rewarding" / "ray_train" / "iter_0_model_x").mkdir(parents=True)

    status = read_status(str(tmp_path), now=NOW)
    assert status.kind == "stages" and [s.name for s in status.stages] == ["base_model", "data"]
    names = [p.path.rsplit("/", 1)[1] for p in status.parts]
    assert names == ["sft", "self_rewarding", "temporal"]
    assert [p.state for p in status.parts] == ["finished", "finished", "stopped"]
    assert status.state == "stopped"
    text = format_status(status)
    assert "  sft: FINISHED" in text and "  temporal: STOPPED (method temporal" in text
    assert "ray_train" not in text
    # The same through a URI: parts are named as URIs too, relative to the root in the table.
    by_uri = read_status(f"file://{tmp_path}", now=NOW)
    assert by_uri.parts[0].path == f"file://{tmp_path}/sft"
    assert format_status(by_uri).splitlines()[1:] == text.splitlines()[1:]


def test_a_missing_directory_is_an_error(tmp_path, capsys):
    assert main(["status", str(tmp_path / "nowhere")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()  # status writes nothing
