"""The run lock: one run at a time per run directory, taken atomically by real processes
racing at the same instant, taken over from a dead run by exactly one of them, and a
heartbeat that stops its run when another run has taken the lock over."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from temporal_ray.storage import lock as lock_module
from temporal_ray.storage.lock import LOCK, RunLock, RunLockedError, RunLockLostError
from temporal_ray.storage.run_dir import RunDir

ROOT = Path(__file__).resolve().parents[2]
RACERS, ROUNDS = 6, 4

# A process that takes a lock when told to ("take DIR"), reports whether it won and holds it
# until told to let go ("release"): one per racer, reused across rounds (imports cost more
# than a round).
RACER = r"""
import json, sys
from temporal_ray.storage.lock import RunLock, RunLockedError
from temporal_ray.storage.run_dir import RunDir
print("ready", flush=True)
held = None
for line in sys.stdin:
    command, _, path = line.strip().partition(" ")
    if command == "take":
        try:
            held = RunLock(RunDir(path), beat_every=0.2).acquire()
            print(json.dumps({"won": True}), flush=True)
        except RunLockedError as err:
            print(json.dumps({"won": False, "error": str(err)}), flush=True)
    elif command == "release":
        if held is not None:
            held.release()
            held = None
        print("released", flush=True)
"""


@pytest.fixture(scope="module")
def racers():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", RACER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, env=env, cwd=ROOT)
             for _ in range(RACERS)]
    try:
        for proc in procs:
            assert proc.stdout.readline() == b"ready\n"
        yield procs
    finally:
        for proc in procs:
            proc.stdin.close()
        for proc in procs:
            proc.wait(timeout=30)


def race(procs: list[subprocess.Popen], path: Path) -> tuple[int, list[str]]:
    """Tell every racer to take `path` at once; the winner's pid and the others' errors."""
    command = f"take {path}\n".encode()
    for proc in procs:  # one write each, back to back: the racers wake within microseconds
        os.write(proc.stdin.fileno(), command)
    results = [json.loads(proc.stdout.readline()) for proc in procs]
    winners = [proc.pid for proc, result in zip(procs, results, strict=True) if result["won"]]
    assert len(winners) == 1, f"{len(winners)} runs took {path}: {results}"
    for proc in procs:
        os.write(proc.stdin.fileno(), b"release\n")
        assert proc.stdout.readline() == b"released\n"
    assert not list(path.iterdir()), "the lock, a marker or a temporary file was left behind"
    return winners[0], [r["error"] for r in results if not r["won"]]


def test_processes_racing_for_a_free_directory_one_wins(racers, tmp_path):
    for i in range(ROUNDS):
        path = tmp_path / f"run{i}"
        path.mkdir()
        winner, errors = race(racers, path)
        assert len(errors) == RACERS - 1
        for error in errors:
            assert f"in use by process {winner} on {socket.gethostname()}" in error


@pytest.mark.parametrize("holder", ["dead_pid", "old_heartbeat"])
def test_processes_racing_for_a_stale_lock_one_takes_it_over(racers, tmp_path, holder):
    stale = ({"host": socket.gethostname(), "pid": dead_pid(), "beat": time.time()}
             if holder == "dead_pid" else
             {"host": "another-node", "pid": 1, "beat": time.time() - 600})
    for i in range(ROUNDS):
        path = tmp_path / f"run{i}"
        path.mkdir()
        (path / LOCK).write_text(json.dumps({**stale, "token": "crashed"}))
        winner, errors = race(racers, path)
        for error in errors:
            assert f"in use by process {winner} on {socket.gethostname()}" in error


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_second_run_on_the_same_directory_is_refused(tmp_path):
    run = RunDir(str(tmp_path))
    with RunLock(run):
        with pytest.raises(RunLockedError, match="in use by process"):
            RunLock(run).acquire()
    assert not (tmp_path / LOCK).exists()
    with RunLock(run):  # released: the next run gets it
        pass


def test_lock_of_a_dead_process_is_taken_over(tmp_path):
    (tmp_path / LOCK).write_text(json.dumps(
        {"host": socket.gethostname(), "pid": dead_pid(), "token": "x", "beat": time.time()}))
    with RunLock(RunDir(str(tmp_path))) as lock:
        assert json.loads((tmp_path / LOCK).read_text())["token"] == lock.owner["token"]


def test_lock_with_a_stale_heartbeat_is_taken_over(tmp_path):
    (tmp_path / LOCK).write_text(json.dumps(
        {"host": "another-node", "pid": 1, "token": "x", "beat": time.time() - 600}))
    with RunLock(RunDir(str(tmp_path)), stale_after=120):
        pass


def test_a_marker_left_by_a_process_killed_mid_swap_does_not_block(tmp_path):
    stale = json.dumps({"host": "another-node", "pid": 1, "token": "x",
                        "beat": time.time() - 600}).encode()
    (tmp_path / LOCK).write_bytes(stale)
    marker = tmp_path / f"{LOCK}.tmp-swap-{lock_module.hashlib.sha256(stale).hexdigest()[:16]}"
    marker.write_text(json.dumps({"host": socket.gethostname(), "pid": dead_pid(),
                                  "token": "killed", "beat": time.time()}))
    with RunLock(RunDir(str(tmp_path))) as lock:
        assert json.loads((tmp_path / LOCK).read_text())["token"] == lock.owner["token"]
    assert not list(tmp_path.iterdir())


def test_heartbeat_rewrites_its_own_lock_and_recreates_a_deleted_one(tmp_path):
    with RunLock(RunDir(str(tmp_path)), beat_every=0.05) as lock:
        first = json.loads((tmp_path / LOCK).read_text())["beat"]
        wait_for(lambda: json.loads((tmp_path / LOCK).read_text())["beat"] > first)
        (tmp_path / LOCK).unlink()  # removed by hand: nobody else holds it, so ours again
        wait_for(lambda: (tmp_path / LOCK).exists())
        assert json.loads((tmp_path / LOCK).read_text())["token"] == lock.owner["token"]
        assert lock.lost is None


def wait_for(condition, within: float = 5.0) -> None:
    deadline = time.time() + within
    while not condition():
        assert time.time() < deadline, "not within 5 s"
        time.sleep(0.01)


OTHER = {"host": "other-host", "pid": 4242, "token": "theirs"}


def take_over(path: Path) -> None:
    """What another run does once it finds this run's lock stale: it replaces the lock whole
    (a write in place could be read half-written by this run's heartbeat)."""
    fresh = path / f"{LOCK}.other"
    fresh.write_text(json.dumps({**OTHER, "beat": time.time()}))
    os.replace(fresh, path / LOCK)


@pytest.fixture(autouse=True)
def python_sigint_handler():
    """Python's own SIGINT handler, as in a fresh driver: a Ray Train fit() earlier in this
    test process may have left its handler, which aborts a training run instead of raising,
    so a heartbeat's interrupt would never reach these tests."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_heartbeat_stops_a_run_whose_lock_was_taken_over(tmp_path, caplog):
    lock = RunLock(RunDir(str(tmp_path)), beat_every=0.1)
    with pytest.raises(RunLockLostError, match="taken over by process 4242 on other-host") as e:
        with lock:
            take_over(tmp_path)
            taken = time.time()
            time.sleep(30)  # the run at work: interrupted within one beat
    assert time.time() - taken < 2.0  # one beat of 0.1 s, on a busy machine
    assert isinstance(e.value.__cause__, KeyboardInterrupt)
    assert any(r.levelname == "ERROR" and "other-host" in r.getMessage()
               for r in caplog.records) and "other-host" in e.value.args[0]
    with pytest.raises(RunLockLostError, match="process 4242 on other-host"):
        lock.check()
    # Neither the heartbeat nor the release touched the new owner's lock.
    assert json.loads((tmp_path / LOCK).read_text())["token"] == "theirs"


def test_a_run_that_lost_its_lock_publishes_no_stage(tmp_path):
    run = RunDir(str(tmp_path))
    with pytest.raises(RunLockLostError, match="other-host"):  # raised again on the way out
        with RunLock(run, beat_every=0.1):
            run.run_stage("iter_0/a", lambda tmp: {})
            take_over(tmp_path)
            try:  # code that swallows the interrupt is stopped at its next stage
                time.sleep(30)
            except KeyboardInterrupt:
                pass
            with pytest.raises(RunLockLostError, match="process 4242 on other-host"):
                run.run_stage("iter_0/b", lambda tmp: {})
    assert run.finished("iter_0/a") and run.finished("iter_0/b") is None
    assert json.loads((tmp_path / LOCK).read_text())["token"] == "theirs"


def test_object_store_lock_is_read_back_after_it_settles(tmp_path, monkeypatch):
    """On a store (here: a local directory taken as one) a run whose lock another run's write
    replaced while it settled refuses, naming that run."""
    monkeypatch.setattr(lock_module, "_has_hard_links", lambda path: False)
    run = RunDir(str(tmp_path))
    with RunLock(run, settle=0.01) as lock:
        assert json.loads((tmp_path / LOCK).read_text())["token"] == lock.owner["token"]
        with pytest.raises(RunLockedError, match="in use by process"):
            RunLock(run, settle=0.01).acquire()
    assert not (tmp_path / LOCK).exists()

    real_sleep = time.sleep

    def another_write_lands(seconds: float) -> None:
        take_over(tmp_path)  # while this run's own write settles
        real_sleep(seconds)

    monkeypatch.setattr(lock_module.time, "sleep", another_write_lands)
    with pytest.raises(RunLockedError, match="in use by process 4242 on other-host"):
        RunLock(run, settle=0.01).acquire()
