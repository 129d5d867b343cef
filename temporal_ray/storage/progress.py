"""A running training stage's progress record: `<output dir>/progress.json`.

Rank 0 of a Ray Train job writes it as optimizer steps end (`ProgressWriter`: at most one
write every `min_interval_s`, and always the last step) into the stage's output directory,
which is the stage's temporary `.tmp-` directory while it runs; it removes the record when the
stage is done. Two readers: the driver, which draws a bar from it while it waits on the job
(training/launch.py), and `temporal-ray status`, which shows a running stage's step (it reads
only the run directory). Written whole under a temporary name, then moved into place, so a
reader never sees half a record; a reader that finds none (not started yet, or done) gets None.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass

from pyarrow import fs as pafs

from temporal_ray.storage.files import resolve

PROGRESS = "progress.json"


@dataclass(frozen=True)
class ProgressRecord:
    kind: str
    """What is training: dpo or sft."""
    step: int
    """Optimizer steps done (a resumed run counts the steps before its restart)."""
    total: int
    started: float
    """When this attempt's training began (time.time()): a new value is a restart."""
    updated: float
    """When `step` ended."""
    from_step: int = 0
    """The step this attempt began after (a restart resumes from its last checkpoint)."""

    def seconds_left(self) -> float | None:
        """At this attempt's pace so far: None before its first step."""
        done = self.step - self.from_step
        if done <= 0 or self.updated <= self.started:
            return None
        return (self.updated - self.started) / done * max(self.total - self.step, 0)


def write_progress(output_dir: str, record: ProgressRecord) -> None:
    fs, directory = resolve(output_dir)
    fs.create_dir(directory, recursive=True)
    final = f"{directory}/{PROGRESS}"
    tmp = f"{final}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open_output_stream(tmp) as out:
        out.write(json.dumps(asdict(record)).encode("utf-8"))
    fs.move(tmp, final)


def read_progress(output_dir: str, fs: pafs.FileSystem | None = None) -> ProgressRecord | None:
    """The record in `output_dir` (a URI; with `fs`, a path on it), or None: none there,
    or not readable now (a reader polls again)."""
    fs, directory = (fs, output_dir) if fs is not None else resolve(output_dir)
    try:
        with fs.open_input_stream(f"{directory}/{PROGRESS}") as f:
            return ProgressRecord(**json.loads(f.read().decode("utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def remove_progress(output_dir: str) -> None:
    fs, directory = resolve(output_dir)
    try:
        fs.delete_file(f"{directory}/{PROGRESS}")
    except FileNotFoundError:
        pass


class ProgressWriter:
    """Rank 0's side: `step(n)` after each optimizer step; writes at most one record every
    `min_interval_s` (a remote output directory is an object store), but always the last."""

    def __init__(self, output_dir: str, kind: str, total: int, from_step: int = 0,
                 min_interval_s: float = 1.0, clock: Callable[[], float] = time.time) -> None:
        self.output_dir, self.kind, self.total = output_dir, kind, total
        self.from_step = from_step
        self.min_interval_s, self.clock = min_interval_s, clock
        self.started = clock()
        self._written = float("-inf")

    def step(self, step: int) -> None:
        now = self.clock()
        if step < self.total and now - self._written < self.min_interval_s:
            return
        write_progress(self.output_dir, ProgressRecord(
            self.kind, step, self.total, self.started, now, self.from_step))
        self._written = now
