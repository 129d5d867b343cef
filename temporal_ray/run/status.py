"""`temporal-ray status RUN_DIR`: where a run stands, read from its directory alone.

Works on any machine that sees the storage (a local path or any URI pyarrow opens), for a
finished, a running or a crashed run, and writes nothing. What it reads:

    config.yaml                  the method and its number of iterations (a method run)
    iter_<i>/<stage>/manifest.json    a finished stage: its seconds and finish time
    iter_<i>/<stage>.tmp-<start>-<id>/    a stage being written since <start>, or left by a
                                 crash (the run lock tells which)
    run.lock                     the owner (host, pid) and its heartbeat (storage/lock.py)

The stages an iteration makes come from `METHODS[name].stages` (run/methods.py), after the
driver's `prompts`. A directory that is not a method run (the miniature's root, an SFT run,
an evaluation) is shown as the stages found in it (any `<name>/manifest.json`) and its parts:
each sub-directory that holds stages or runs is described the same way, so the miniature's
root lists base_model and data, then sft/, self_rewarding/, temporal/ and eval/. What such a
directory has still to make is its recipe's knowledge, not the directory's: a part not started
yet is not listed, and "finished" there means every stage found has finished.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml
from pyarrow import fs as pafs

from temporal_ray.run.iteration import PROMPTS
from temporal_ray.run.methods import METHODS
from temporal_ray.storage.files import resolve
from temporal_ray.storage.lock import LOCK, STALE_AFTER, stale_reason
from temporal_ray.storage.progress import read_progress
from temporal_ray.storage.run_dir import MANIFEST, TMP, temporary_stage

SCRATCH = {"ray_train", "tensorboard", "mlruns", ".shared_pass", "eval_answers"}
"""Directories of a run that hold no stages (training checkpoints, logs): not walked."""
MAX_DEPTH = 3


class NotARunError(FileNotFoundError):
    """The path given to `temporal-ray status` is not a directory."""


@dataclass
class StageStatus:
    name: str
    state: str
    """finished, running (a .tmp- directory and a live lock), interrupted (a .tmp- directory
    a dead run left: the next run redoes it) or remaining."""
    seconds: float | None = None
    finished_at: float | None = None
    started_at: float | None = None
    """Of a running or interrupted stage: from the .tmp- directory's name (or its mtime)."""
    progress: str | None = None
    expected: bool = True
    """False for a stage the method does not make (an analysis's, e.g. the miniature's
    `collapse`): listed after the method's stages."""


@dataclass
class LockStatus:
    host: str
    pid: int
    beat: float
    age: float
    """Seconds since the last heartbeat (one every 20 s while the run lives)."""
    stale: str | None
    """None while the owner lives; else why the lock is a dead run's."""


@dataclass
class IterationStatus:
    index: int
    stages: list[StageStatus]


@dataclass
class RunStatus:
    path: str
    kind: str
    """method (a `temporal-ray run` directory) or stages (anything else: shown as found)."""
    state: str
    """finished, running (a live lock here or in a part), crashed (a stale lock: the owner
    died without releasing it), stopped (no lock, stages remaining: an error, Ctrl-C or
    --until ended it) or empty."""
    reason: str
    now: float
    lock: LockStatus | None = None
    method: str | None = None
    planned_iterations: int | None = None
    iterations: list[IterationStatus] = field(default_factory=list)
    stages: list[StageStatus] = field(default_factory=list)
    parts: list[RunStatus] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    """Files at the top (summary.json, report.md, results.json ...), not config or lock."""

    def all_stages(self) -> list[StageStatus]:
        return [s for it in self.iterations for s in it.stages] + self.stages

    def seconds(self) -> float:
        """Seconds in this run's finished stages (its parts' not included)."""
        return round(sum(s.seconds or 0.0 for s in self.all_stages()), 2)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def read_status(uri: str, now: float | None = None) -> RunStatus:
    """The status of the run (or directory of runs) at `uri`."""
    fs, root = resolve(uri)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        raise NotARunError(f"{uri}: no such directory")
    scheme = uri.split("://", 1)[0] + "://" if "://" in uri else ""
    status = _describe(fs, root, time.time() if now is None else now, depth=0)
    _with_scheme(status, scheme)
    return status


def _with_scheme(status: RunStatus, scheme: str) -> None:
    """Paths as URIs again (s3://bucket/run/sft), as the user gave the root."""
    status.path = scheme + status.path
    for part in status.parts:
        _with_scheme(part, scheme)


def _describe(fs: pafs.FileSystem, path: str, now: float, depth: int) -> RunStatus:
    entries = _list(fs, path)
    names = {e.base_name for e in entries}
    lock = _read_lock(fs, path, now)
    config = _read_yaml(fs, f"{path}/config.yaml") if "config.yaml" in names else {}
    files = sorted(e.base_name for e in entries if e.type == pafs.FileType.File
                   and e.base_name not in {"config.yaml", LOCK} and TMP not in e.base_name)
    if "method" in config or any(n.startswith("iter_") for n in names):
        status = _method_run(fs, path, entries, config, lock, now)
    else:
        status = _stages_dir(fs, path, entries, lock, now, depth)
    status.files = files
    return status


def _method_run(fs: pafs.FileSystem, path: str, entries: list[pafs.FileInfo],
                config: dict[str, Any], lock: LockStatus | None, now: float) -> RunStatus:
    method = config.get("method", {}).get("name")
    spec = METHODS.get(method)
    expected = (PROMPTS, *spec.stages) if spec else ()
    found = sorted(int(e.base_name[5:]) for e in entries
                   if e.base_name.startswith("iter_") and e.base_name[5:].isdigit())
    planned = config.get("method", {}).get("iterations")
    count = max([planned or 0, *(i + 1 for i in found)])
    live = lock is not None and lock.stale is None
    iterations = []
    for i in range(count):
        stages = _stages_in(fs, f"{path}/iter_{i}", live, now)
        listed = [stages.pop(name, StageStatus(name, "remaining")) for name in expected]
        for extra in sorted(stages.values(), key=lambda s: s.finished_at or now):
            extra.expected = False
            listed.append(extra)
        for stage in listed:
            if stage.state == "running":
                stage.progress = _progress(fs, path, i, stage, config)
        iterations.append(IterationStatus(i, listed))
    status = RunStatus(path, "method", "", "", now, lock, method, planned, iterations)
    status.state, status.reason = _method_state(status, known=spec is not None)
    return status


def _method_state(status: RunStatus, known: bool) -> tuple[str, str]:
    stages = [s for s in status.all_stages() if s.expected]
    left = [s for s in stages if s.state != "finished"]
    done = len(stages) - len(left)
    counted = f"{done} of {len(stages)} stages finished"
    if not known:
        counted = f"{done} stages finished (method {status.method!r} unknown: no stage list)"
    lock = status.lock
    if lock is not None and lock.stale is None:
        return "running", f"{counted}; heartbeat {ago(lock.age)} ago"
    if not left and known and stages:
        return "finished", counted
    if lock is not None:  # the owner died holding it: killed, not an error it caught
        return "crashed", f"{counted}; its owner died (stale lock); rerun to resume"
    if not stages or (done == 0 and not known):
        return "empty", "no stage found"
    return "stopped", (f"{counted}; no lock (the run exited: an error, Ctrl-C or --until); "
                       "rerun the same command to resume")


def _stages_dir(fs: pafs.FileSystem, path: str, entries: list[pafs.FileInfo],
                lock: LockStatus | None, now: float, depth: int) -> RunStatus:
    live = lock is not None and lock.stale is None
    stages = _stages_in(fs, path, live, now, entries)
    parts = []
    if depth < MAX_DEPTH:
        for entry in entries:
            name = entry.base_name
            if (entry.type != pafs.FileType.Directory or name in stages or TMP in name
                    or name in SCRATCH or name.startswith(".")):
                continue
            part = _describe(fs, entry.path, now, depth + 1)
            if part.state != "empty":
                parts.append(part)
    listed = sorted(stages.values(), key=lambda s: (s.finished_at or now, s.name))
    for stage in listed:
        if stage.state == "running":  # an SFT's model stage: its step
            stage.progress = training_progress(fs, path, stage.name)
    parts.sort(key=lambda part: (_first_time(part, now), part.path))  # in the order they ran
    status = RunStatus(path, "stages", "", "", now, lock, stages=listed, parts=parts)
    status.state, status.reason = _stages_state(status)
    return status


def _stages_state(status: RunStatus) -> tuple[str, str]:
    states = {p.state for p in status.parts} | {s.state for s in status.stages}
    done = sum(s.state == "finished" for s in status.stages)
    counted = f"{count_of(done, 'stage')} finished here, {count_of(len(status.parts), 'part')}"
    lock = status.lock
    if (lock is not None and lock.stale is None) or "running" in states:
        beat = f"; heartbeat {ago(lock.age)} ago" if lock and lock.stale is None else ""
        return "running", counted + beat
    if lock is not None:
        return "crashed", f"{counted}; its owner died (stale lock)"
    for state in ("crashed", "stopped", "interrupted"):
        if state in states:
            return ("stopped" if state == "interrupted" else state), f"{counted}; a part {state}"
    if not status.stages and not status.parts:
        return "empty", "no stage found"
    return "finished", f"{counted}; every stage found has finished"


def _first_time(status: RunStatus, now: float) -> float:
    times = [s.finished_at or s.started_at or now for s in status.all_stages()]
    return min([*times, *(_first_time(p, now) for p in status.parts), now])


def _stages_in(fs: pafs.FileSystem, path: str, live: bool, now: float,
               entries: list[pafs.FileInfo] | None = None) -> dict[str, StageStatus]:
    """The finished stages (`<name>/manifest.json`) and the ones being written
    (`<name>.tmp-...`) directly under `path`, by name."""
    entries = _list(fs, path) if entries is None else entries
    dirs = [e for e in entries if e.type == pafs.FileType.Directory]
    stages: dict[str, StageStatus] = {}
    for entry in sorted(dirs, key=lambda e: e.base_name):
        temporary = temporary_stage(entry.base_name)
        if temporary is not None:
            name, started = temporary
            if started is None and entry.mtime is not None:  # an earlier version's name
                started = entry.mtime.timestamp()
            previous = stages.get(name)
            if previous is None or (previous.state != "finished"
                                    and (previous.started_at or 0) < (started or 0)):
                stages[name] = StageStatus(name, "running" if live else "interrupted",
                                           started_at=started)
    manifests = fs.get_file_info([f"{e.path}/{MANIFEST}" for e in dirs
                                  if TMP not in e.base_name])
    for info in manifests:
        if info.type == pafs.FileType.File:
            manifest = _read_json(fs, info.path)
            name = info.path.rsplit("/", 2)[1]
            stages[name] = StageStatus(name, "finished", manifest.get("seconds"),
                                       manifest.get("finished_at"))
    return stages


def _progress(fs: pafs.FileSystem, run: str, iteration: int, stage: StageStatus,
              config: dict[str, Any]) -> str:
    """What a running stage has written so far, where that is cheap to read: the rows in
    its Parquet files (Ray Data writes them block by block), against the rows a generate
    stage makes (prompts x generation.samples); a DPO stage's step (its progress record),
    or else its Ray Train checkpoints."""
    if stage.name.startswith("model"):
        steps = training_progress(fs, f"{run}/iter_{iteration}", stage.name)
        if steps:
            return steps
        runs = [e for e in _list(fs, f"{run}/ray_train")
                if e.base_name.startswith(f"iter_{iteration}_{stage.name}_")]
        saved = [e for r in runs for e in _list(fs, r.path)
                 if e.base_name.startswith("checkpoint_")]
        return f"{len(saved)} checkpoints saved" if saved else "training (progress unknown)"
    tmp = [e for e in _list(fs, f"{run}/iter_{iteration}")
           if e.base_name.startswith(f"{stage.name}{TMP}")]
    rows = sum(_parquet_rows(fs, e.path) for e in tmp)
    expected = None
    prompts = _read_json(fs, f"{run}/iter_{iteration}/{PROMPTS}/{MANIFEST}")
    if stage.name.startswith("candidates_") and prompts.get("rows"):
        expected = prompts["rows"] * config.get("generation", {}).get("samples", 1)
    if not rows:
        return "no rows written yet"
    return f"{rows} of {expected} rows written" if expected else f"{rows} rows written"


def training_progress(fs: pafs.FileSystem, parent: str, stage: str) -> str | None:
    """A running training stage's step, from the progress record rank 0 keeps in the stage's
    temporary directory under `parent`; None when there is none (yet)."""
    for entry in _list(fs, parent):
        if not entry.base_name.startswith(f"{stage}{TMP}"):
            continue
        record = read_progress(entry.path, fs)
        if record is not None:
            left = record.seconds_left()
            return (f"{record.kind} step {record.step} of {record.total} "
                    f"({record.step / max(record.total, 1):.0%})"
                    + (f", about {ago(left)} left" if left is not None else ""))
    return None


def _parquet_rows(fs: pafs.FileSystem, path: str) -> int:
    import pyarrow.parquet as pq

    selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
    total = 0
    for info in fs.get_file_info(selector):
        if info.type == pafs.FileType.File and info.base_name.endswith(".parquet"):
            try:  # a file still being written has no footer yet
                with fs.open_input_file(info.path) as f:
                    total += pq.ParquetFile(f).metadata.num_rows
            except (OSError, ValueError):
                continue
    return total


def _read_lock(fs: pafs.FileSystem, path: str, now: float) -> LockStatus | None:
    holder = _read_json(fs, f"{path}/{LOCK}")
    if not holder or "beat" not in holder:
        return None
    return LockStatus(holder.get("host", "?"), holder.get("pid", -1), holder["beat"],
                      round(now - holder["beat"], 1), stale_reason(holder, STALE_AFTER, now))


def _list(fs: pafs.FileSystem, path: str) -> list[pafs.FileInfo]:
    return fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))


def _read_json(fs: pafs.FileSystem, path: str) -> dict[str, Any]:
    try:
        with fs.open_input_stream(path) as f:
            return json.loads(f.read().decode("utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _read_yaml(fs: pafs.FileSystem, path: str) -> dict[str, Any]:
    with fs.open_input_stream(path) as f:
        return yaml.safe_load(f.read().decode("utf-8")) or {}


def count_of(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def utc_clock(ts: float, date: bool = True) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S" if date else "%m-%d %H:%M:%S", time.gmtime(ts))


def ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
