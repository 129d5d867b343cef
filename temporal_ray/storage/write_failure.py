"""A write that failed for want of room: a full disk (ENOSPC), a file size limit (EFBIG) or a
quota (EDQUOT), found in whatever error a stage raised, and the one message that says so.

The error can come from the driver (an OSError), from a Ray task (a `RayTaskError` whose
`cause` is the OSError), or from a Ray Train worker or controller (a `TrainingFailedError`
holding each worker's exception). safetensors says it in words only ("I/O error: No space
left on device (os error 28)" from a model export), so the text is matched too. torch.save
(DeepSpeed's in-run checkpoints) says only "file write failed": not recognised, its error is
raised as it is.

A file size limit (`ulimit -f`) sends SIGXFSZ, whose default action kills the process; every
Python process (this driver, each Ray worker) ignores it from its start (CPython does), so the
write fails with EFBIG instead. Ray's own C++ processes do not: under a 1 MiB limit a local
Ray cluster does not start (its raylet dies creating the object store's file)."""

from __future__ import annotations

import errno
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

logger = logging.getLogger(__name__)

ADVICE = {
    errno.ENOSPC: "free space on the file system it is on",
    errno.EFBIG: "raise the file size limit (ulimit -f) of the shell that starts the run",
    errno.EDQUOT: "free space in your quota, or raise it",
}
TEXTS = {
    errno.ENOSPC: ("No space left on device", "StorageFull"),
    errno.EFBIG: ("File too large", "FileTooLarge"),
    errno.EDQUOT: ("Disk quota exceeded", "FilesystemQuotaExceeded"),
}
_PATH = re.compile(r"file '([^']+)'")
"""How pyarrow names the file it failed to open ("Failed to open local file '/...'"); a
traceback's `File "..."` lines (double quotes) are code, not the file written."""


@dataclass(frozen=True)
class WriteFailure:
    """Why a write failed, and where when the error says."""

    errno: int
    path: str | None

    def describe(self, where: str) -> str:
        """'No space left on device writing <path>: free space on ..., then run the same
        command again to resume'; `where` stands for the path when the error names none."""
        return (f"{TEXTS[self.errno][0]} writing {self.path or where}: "
                f"{ADVICE[self.errno]}, then run the same command again to resume")


class StageWriteError(RuntimeError):
    """A stage, or a file of the run outside a stage, could not be written for want of room.
    Nothing of the stage was published; a rerun with room redoes it."""

    def __init__(self, what: str, failure: WriteFailure, where: str):
        super().__init__(f"{what}: {failure.describe(where)}")
        self.failure = failure


def stop_on_write_failure(err: BaseException, what: str, where: str,
                          discard: Callable[[], None]) -> None:
    """Raise `StageWriteError` for `what` when `err` is a want of room, after `discard()`
    deleted what was written (the room it took is what the user needs); else return."""
    failure = find_write_failure(err)
    if failure is None:
        return
    try:
        discard()
    except OSError as left:  # the next attempt removes it
        logger.warning("could not delete %s: %s", where, left)
    raise StageWriteError(what, failure, where) from err


def find_write_failure(error: BaseException) -> WriteFailure | None:
    """The room-for-writing failure inside `error` (or its causes), or None."""
    for found in _chain(error):
        if isinstance(found, OSError) and found.errno in ADVICE:
            return WriteFailure(found.errno, found.filename or _path_in(str(found)))
    text = "\n".join(_text(found) for found in _chain(error))
    for number, words in TEXTS.items():
        if any(word in text for word in words) or f"[Errno {number}]" in text:
            return WriteFailure(number, _path_in(text))
    return None


def _chain(error: BaseException) -> Iterator[BaseException]:
    """`error` and every exception it holds: Python's causes, a Ray task's `cause`, a Ray
    Train worker's or controller's failure (Ray's own attribute names)."""
    todo, seen = [error], set()
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        held = [current.__cause__, current.__context__, getattr(current, "cause", None),
                getattr(current, "_base_exc", None), getattr(current, "controller_failure", None),
                *(getattr(current, "worker_failures", None) or {}).values()]
        todo.extend(e for e in held if isinstance(e, BaseException))


def _text(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:  # a wrapper whose __str__ fails must not hide the cause
        return ""


def _path_in(text: str) -> str | None:
    found = _PATH.search(text)
    return found.group(1) if found else None
