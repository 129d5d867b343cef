"""The run directory: where every stage's output lands atomically, and how a rerun resumes.

    runs/<name>/config.yaml                    resolved config of the run
    runs/<name>/iter_<i>/<stage>/              one finished stage: data files + manifest.json
    runs/<name>/iter_<i>/<stage>.tmp-<start>-<uuid>/   a stage being written since <start>
                                               (Unix seconds; ignored, cleaned up)

A stage is finished exactly when its directory exists under its final name and holds
`manifest.json`: outputs are written into a temporary sibling, the manifest is written last,
then the directory is renamed into place. A crash at any point leaves either nothing or a
`.tmp-` directory, never a half stage under the final name. The run directory is any path that
pyarrow's filesystems open (local, a mounted volume, s3://, gs://).

The manifest records each file's size and SHA-256 (integrity.py). A rerun reuses a stage only
when its files still match; a damaged stage is deleted with every stage of this run directory
that finished after it (they may have been built from it), and redone.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyarrow import fs as pafs

from temporal_ray.storage.files import resolve
from temporal_ray.storage.integrity import (
    Damage,
    check_files,
    list_files,
    record_files,
    verify_mode,
)
from temporal_ray.storage.write_failure import stop_on_write_failure

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
TMP = ".tmp-"
"""What marks a stage's directory as being written: `<stage>.tmp-<start>-<id>`."""
KILL_AT_ENV = "TEMPORAL_RAY_TEST_KILL_AT"
"""Test hook: the stage (e.g. iter_0/model) whose publish SIGKILLs this process once its files
and manifest are written, before the rename (tests/run/test_killed_driver.py)."""


def temporary_name(stage: str, started: float) -> str:
    """The name a stage is written under since `started`: the start time in the name lets
    `temporal-ray status` tell a running stage's age on any filesystem (object stores keep no
    directory times)."""
    return f"{stage}{TMP}{int(started)}-{uuid.uuid4().hex[:8]}"


def temporary_stage(name: str) -> tuple[str, float | None] | None:
    """(stage, start time) of a directory name made by `temporary_name`; the start is None
    for an older name without one; None when `name` is not a stage being written."""
    if TMP not in name:
        return None
    stage, _, tail = name.partition(TMP)
    start = tail.split("-", 1)[0]
    return stage, float(start) if "-" in tail and start.isdigit() else None


@dataclass(frozen=True)
class StageResult:
    """A finished stage: where it lives and what its manifest says."""

    path: str
    manifest: dict[str, Any]
    reused: bool = False
    """True when the stage had finished in an earlier attempt and was not run again."""
    files: dict[str, dict[str, Any]] | None = None
    """The manifest's record of each file's size and SHA-256, kept apart from `manifest`
    (which is logged and summarised); None in a manifest written before files were recorded."""


class UnknownStageError(ValueError):
    """A stage named on the command line that this run directory has not finished."""


class RunDir:
    """One run's directory, holding stage outputs under `iter_<i>/<stage>`."""

    def __init__(self, uri: str):
        self.fs, self.root = resolve(uri)
        self.scheme = uri.split("://", 1)[0] + "://" if "://" in uri else ""
        self.uri = self.scheme + self.root
        self.fs.create_dir(self.root, recursive=True)
        self.guard: Callable[[], None] | None = None
        """Called before a stage starts and before it is published; raises to stop the run.
        The run lock sets it while held (`RunLock.check`): a run that lost its lock to
        another run must not publish into that run's directory."""
        self.verify = verify_mode()
        self._trusted: set[str] = set()
        """Stages this process published or verified: not checked again, and not deleted when
        an earlier stage turns out damaged (their paths are handed out already)."""

    def path(self, *parts: str) -> str:
        """Path inside this run's filesystem (what `self.fs` takes)."""
        return "/".join([self.root, *parts])

    def uri_of(self, fs_path: str) -> str:
        """The same place as a URI that any process (a Ray worker) can `resolve`."""
        return self.scheme + fs_path

    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def write_text(self, relative: str, text: str) -> None:
        """Write a small file atomically (temporary name, then rename)."""
        self.write_bytes(relative, text.encode("utf-8"))

    def write_bytes(self, relative: str, data: bytes) -> None:
        final = self.path(relative)
        tmp = f"{final}.tmp-{uuid.uuid4().hex[:8]}"
        self.fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
        with self.fs.open_output_stream(tmp) as out:
            out.write(data)
        self.fs.move(tmp, final)

    def read_text(self, relative: str) -> str | None:
        try:
            with self.fs.open_input_stream(self.path(relative)) as f:
                return f.read().decode("utf-8")
        except FileNotFoundError:
            return None

    def finished(self, stage: str) -> StageResult | None:
        """The finished stage at `stage` (e.g. 'iter_0/pairs'), or None."""
        text = self.read_text(f"{stage}/{MANIFEST}")
        if text is None:
            return None
        manifest = json.loads(text)
        files = manifest.pop("files", None)
        return StageResult(self.uri_of(self.path(stage)), manifest, files=files)

    def reusable(self, stage: str) -> StageResult | None:
        """The finished `stage` if its files are as its manifest records, else None: a
        damaged stage is deleted, with every stage that finished after it."""
        done = self.finished(stage)
        # A manifest written before files were recorded has nothing to check: trusted.
        if done is None or stage in self._trusted or done.files is None:
            return done
        damage = check_files(self.fs, self.path(stage), done.files, self.verify)
        if damage is None:
            self._trusted.add(stage)
            return done
        self._discard_damaged(stage, done.manifest["finished_at"], damage)
        return None

    def _discard_damaged(self, stage: str, finished_at: float, damage: Damage) -> None:
        """Delete a damaged stage and the stages that finished after it: they may have read
        it, and a redone stage may differ (sampling). Deleted, not just skipped, so a rerun
        that crashes before redoing them still does not reuse them."""
        self._check_guard()
        later = [s for s, at in self.own_stages().items()
                 if at > finished_at and s != stage and s not in self._trusted]
        logger.warning(f"stage {stage} is damaged: {damage.file} {damage.what}; redoing it"
                       + (f" and the stages finished after it: {', '.join(later)}"
                          if later else ""))
        for name in [*reversed(later), stage]:
            self.fs.delete_dir(self.path(name))

    def own_stages(self) -> dict[str, float]:
        """Every finished stage of this run directory, at any depth, and when it finished.
        A run directory nested inside this one (a miniature's method runs, an evaluation)
        keeps its own: its manifests name their stage relative to its own root."""
        found = {}
        for relative in list_files(self.fs, self.root):
            stage, _, name = relative.rpartition("/")
            if name != MANIFEST or not stage or TMP in stage:
                continue
            manifest = json.loads(self.read_text(relative) or "{}")
            if manifest.get("stage") == stage:
                found[stage] = manifest.get("finished_at", 0.0)
        return found

    def finished_stages(self) -> dict[str, float]:
        """Every finished stage under iter_<i>/ and when it finished, oldest first."""
        found = {}
        for info in self.fs.get_file_info(pafs.FileSelector(self.root, recursive=True,
                                                            allow_not_found=True)):
            relative = info.path[len(self.root) + 1:]
            parts = relative.split("/")
            if (len(parts) == 3 and parts[0].startswith("iter_") and parts[2] == MANIFEST
                    and ".tmp-" not in parts[1]):
                stage = "/".join(parts[:2])
                found[stage] = json.loads(self.read_text(relative))["finished_at"]
        return dict(sorted(found.items(), key=lambda item: item[1]))

    def discard_from(self, stage: str) -> list[str]:
        """Delete `stage` and every stage that finished after it (they may have read it), so
        the next run redoes them. Returns what was deleted."""
        finished = self.finished_stages()
        if stage not in finished:
            raise UnknownStageError(f"cannot redo {stage}: it has not finished in {self.uri} "
                             f"(finished: {', '.join(finished) or 'none'})")
        doomed = [s for s, at in finished.items() if at >= finished[stage]]
        for name in reversed(doomed):
            self.fs.delete_dir(self.path(name))
        return doomed

    def run_stage(self, stage: str, produce: Callable[[str], dict[str, Any]],
                  **manifest: Any) -> StageResult:
        """Return the finished `stage`, or run `produce(tmp_dir)` and publish its output.

        `produce` writes its files into the directory (URI) it is given and returns a dict of
        counts for the manifest (rows, pairs, ...). Leftover temporary directories of this
        stage from a crashed earlier attempt are removed first.
        """
        done = self.reusable(stage)
        if done is not None:
            return StageResult(done.path, done.manifest, reused=True, files=done.files)
        self._check_guard()
        final = self.path(stage)
        parent, name = final.rsplit("/", 1)
        self.fs.create_dir(parent, recursive=True)
        for info in self.fs.get_file_info(pafs.FileSelector(parent, allow_not_found=True)):
            if info.base_name.startswith(f"{name}.tmp-") or info.base_name == name:
                _delete(self.fs, info)
        started = time.time()
        tmp = f"{parent}/{temporary_name(name, started)}"
        try:
            self.fs.create_dir(tmp, recursive=True)
            counts = produce(self.uri_of(tmp))
            # Hashed once here, through the filesystem, before the manifest is written.
            files = record_files(self.fs, tmp, skip=(MANIFEST,))
            record = {"stage": stage, **manifest, **counts,
                      "seconds": round(time.time() - started, 2), "finished_at": time.time()}
            with self.fs.open_output_stream(f"{tmp}/{MANIFEST}") as out:
                out.write(json.dumps({**record, "files": files}, indent=2,
                                     default=str).encode("utf-8"))
        except Exception as err:
            # Want of room: what the stage wrote goes at once, and the error names the stage.
            stop_on_write_failure(err, describe_stage(stage, manifest), self.uri_of(final),
                                  lambda: self.fs.delete_dir(tmp))
            raise
        self._check_guard()
        if os.environ.get(KILL_AT_ENV) == stage:
            os.kill(os.getpid(), signal.SIGKILL)
        self.fs.move(tmp, final)
        self._trusted.add(stage)
        return StageResult(self.uri_of(final), record, files=files)

    def _check_guard(self) -> None:
        if self.guard is not None:
            self.guard()


def describe_stage(stage: str, manifest: dict[str, Any]) -> str:
    """'iteration 1, generate (present), stage iter_1/candidates_present': what a message
    about a stage names (its kind and role come from its manifest fields)."""
    iteration, _, _ = stage.partition("/")
    kind = manifest.get("kind") or stage.rsplit("/", 1)[-1]
    role = f" ({manifest['role']})" if manifest.get("role") else ""
    head = (f"iteration {iteration.removeprefix('iter_')}, "
            if iteration.startswith("iter_") and iteration[5:].isdigit() else "")
    return f"{head}{kind}{role}, stage {stage}"


def _delete(fs: pafs.FileSystem, info: pafs.FileInfo) -> None:
    if info.type == pafs.FileType.Directory:
        fs.delete_dir(info.path)
    else:
        fs.delete_file(info.path)
