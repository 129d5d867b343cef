"""The driver's side of a training job's progress: rank 0's record, on real files, drawn."""

import time

import pytest

from temporal_ray import terminal
from temporal_ray.storage.progress import ProgressWriter
from temporal_ray.training.launch import TrainingProgress


@pytest.fixture(autouse=True)
def default_terminal(monkeypatch):
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    terminal.configure()
    yield
    terminal.configure()


def test_the_driver_draws_rank_zeros_record_and_warns_of_a_restart(tmp_path, capsys):
    out = str(tmp_path / "model.tmp-1-ab")
    watcher = TrainingProgress(out, mode="log")
    watcher.poll()  # the workers are starting: no record, no bar
    assert watcher.bar is None
    first = ProgressWriter(out, "dpo", total=8, min_interval_s=0)
    first.step(3)
    watcher.poll()
    assert (watcher.bar.label, watcher.bar.done, watcher.bar.total) == ("training (dpo)", 3, 8)
    assert capsys.readouterr().err == ""
    # The group failed; Ray Train started it again from its checkpoint after step 2.
    again = ProgressWriter(out, "dpo", total=8, from_step=2, min_interval_s=0,
                           clock=lambda: first.started + 5)
    again.step(4)
    watcher.poll()
    watcher.poll()  # the same attempt: no second warning
    assert watcher.bar.done == 4
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(
        "warning: training (dpo): Ray Train restarted the workers after a failure; training "
        "goes on after step 2")


def test_the_bar_follows_the_record_while_the_job_runs(tmp_path):
    writer = ProgressWriter(str(tmp_path), "sft", total=5, min_interval_s=0)
    with TrainingProgress(str(tmp_path), poll_s=0.01, mode="log") as watcher:
        for step in range(1, 6):
            writer.step(step)
            time.sleep(0.03)
        deadline = time.time() + 5
        while (watcher.bar is None or watcher.bar.done < 5) and time.time() < deadline:
            time.sleep(0.01)
    assert watcher.bar.done == 5 and watcher.bar.total == 5
    assert not watcher._thread.is_alive()
