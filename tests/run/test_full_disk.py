"""A disk that fills up mid-stage: `temporal-ray run` on a small tmpfs, where the first stages
fit and the DPO stage's model does not. The run stops with one line naming the stage and the
cause (no traceback), publishes nothing of that stage, leaves the finished ones as they were
and releases its lock; once the file system is grown, the same command resumes and completes.

A real ENOSPC for every process of the run (the driver, Ray Data's and Ray Train's workers)
needs a file system of its own: mounting a tmpfs needs root, so the test is skipped without it.
A file size limit (`ulimit -f`), which needs no privileges, cannot stand in: a local Ray
cluster does not start under a limit smaller than its object store (one file of its full
size); tests/storage/test_write_failure.py covers EFBIG in the driver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

ROOM = 1536 << 10
"""Bytes the stages before DPO take with the run's tracking (about 0.95 MiB measured), and
some to spare."""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)],
            capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def resize(disk: Path, size: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(disk)], check=True)


def test_a_full_disk_stops_the_stage_and_the_rerun_resumes(tiny_model, tmp_path, small_disk,
                                                           chaos_record, ray_cluster,
                                                           short_run_config):
    import ray

    # Room for the stages before DPO, not for the model (as large as M0's weights).
    resize(small_disk, ROOM + (Path(tiny_model) / "model.safetensors").stat().st_size // 2)
    run_dir = small_disk / "run"
    command = [sys.executable, "-m", "temporal_ray", "run",
               # No Ray Train restart: each would fail on the same full disk.
               str(short_run_config(tmp_path, tiny_model, run_dir, {"max_failures": 0}))]
    # Both runs join the session's cluster, as a job on a cluster does: its workers (Ray
    # Data's, Ray Train's) write to the same small disk.
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    first = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert first.returncode == 2, first.stderr[-3000:]
    error = [line for line in first.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1, first.stderr[-3000:]
    assert error[0].startswith("error: iteration 0, dpo, stage iter_0/model: No space left on "
                               f"device writing {run_dir}/"), error
    assert error[0].endswith(": free space on the file system it is on, then run the same "
                             "command again to resume"), error
    assert "Traceback" not in first.stderr
    stages = run_dir / "iter_0"
    finished = {p.parent.name: json.loads(p.read_text())["finished_at"]
                for p in stages.glob("*/manifest.json")}
    assert set(finished) == {"prompts", "candidates_present", "scores_present", "pairs"}
    assert sorted(p.name for p in stages.iterdir()) == sorted(finished)  # no model, no .tmp-
    assert not (run_dir / "run.lock").exists()

    resize(small_disk, 256 << 20)
    second = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    survived = second.returncode == 0
    chaos_record("write fails mid-stage (disk full), rerun", 1, survived, 0)
    assert survived, second.stderr[-3000:]
    for stage, finished_at in finished.items():  # nothing finished was redone
        assert json.loads((stages / stage / "manifest.json").read_text())["finished_at"] \
            == finished_at, stage
    assert (stages / "model" / "model.safetensors").exists()
    assert not list(stages.glob("*.tmp-*"))
