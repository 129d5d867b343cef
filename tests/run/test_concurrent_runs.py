"""Several `temporal-ray run` processes started at the same instant on one run directory:
exactly one goes on, the others exit with an error naming it.

Each process is the real command line (`python -m temporal_ray run CONFIG`: config, prompt and
model checks, then the run lock), with two changes made by a small launcher around it: the
modules the command imports are loaded before a common start signal, so that the processes
reach the lock together rather than seconds apart, and `start_ray` (the step after the lock
and the config check) is replaced by a wait, so that the winner starts no Ray cluster and
stops at once on SIGINT."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from temporal_ray.storage.lock import LOCK

pytestmark = pytest.mark.slow  # three processes load torch and transformers: about a minute

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "tiny.yaml"
RUNS = 3
WENT_ON = "went on past the lock"

LAUNCHER = f"""
import runpy, sys, time
import transformers, transformers.models.auto.tokenization_auto
import temporal_ray.cli, temporal_ray.run.driver as driver

def wait_here(cfg):  # instead of Ray: the run holds the lock until the test stops it
    print({WENT_ON!r}, flush=True)
    time.sleep(600)

driver.start_ray = wait_here
print("ready", flush=True)
sys.stdin.readline()
sys.argv = ["temporal_ray", "run", sys.argv[1]]
runpy.run_module("temporal_ray", run_name="__main__", alter_sys=True)
"""


def write_config(tmp_path: Path, model: str) -> Path:
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["model"]["path"] = model
    cfg["data"]["prompts"] = str(ROOT / cfg["data"]["prompts"])
    cfg["storage"]["run_dir"] = str(tmp_path / "run")
    cfg["tracking"] = {"mlflow": {"enabled": False}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_runs_started_together_on_one_directory_one_goes_on(tiny_model, tmp_path):
    config = write_config(tmp_path, tiny_model)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    logs = [tmp_path / f"run{i}.out" for i in range(RUNS)]
    procs = [subprocess.Popen([sys.executable, "-c", LAUNCHER, str(config)], env=env,
                              stdin=subprocess.PIPE, stdout=log.open("wb"),
                              stderr=subprocess.STDOUT, cwd=tmp_path)
             for log in logs]
    try:
        wait_for(lambda: all(log.read_text().startswith("ready") for log in logs), 120)
        for proc in procs:  # one write each, back to back: the start signal
            os.write(proc.stdin.fileno(), b"go\n")
        wait_for(lambda: sum(p.poll() is not None for p in procs) == RUNS - 1
                 and any(WENT_ON in log.read_text() for log in logs), 60)
        (winner,) = [p for p in procs if p.poll() is None]
        assert WENT_ON in logs[procs.index(winner)].read_text()
        named = f"error: {tmp_path / 'run'} is in use by process {winner.pid} on " \
                f"{socket.gethostname()}"
        for proc, log in zip(procs, logs, strict=True):
            if proc is not winner:
                assert proc.returncode == 2, log.read_text()[-3000:]
                assert named in log.read_text() and WENT_ON not in log.read_text()
        winner.send_signal(signal.SIGINT)
        winner.wait(timeout=60)
        assert not (tmp_path / "run" / LOCK).exists(), "the winner did not release its lock"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def wait_for(condition, within: float) -> None:
    deadline = time.time() + within
    while not condition():
        assert time.time() < deadline, f"not within {within:.0f} s"
        time.sleep(0.1)
