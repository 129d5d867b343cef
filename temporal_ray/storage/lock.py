"""One run at a time per run directory: `RunLock`, a lock file with the owner and a heartbeat.

    run.lock                   {"host", "pid", "token", "beat"}: the owner, its last heartbeat
    run.lock.tmp-swap-<hash>   held for a few system calls by the one run that is changing
                               run.lock from the content of that hash (local file systems)

On a local file system (a mounted volume too, when it has hard links) the lock is taken
atomically: of several runs started at the same instant exactly one gets it, and of several
that find the same stale lock exactly one takes it over (the argument is at `_LinkedLockFile`).

Object stores (s3://, gs://, and a local volume without hard links) are best effort: pyarrow
has no conditional write (no "create only if absent", no "replace only if unchanged"). A run
that finds the lock free or stale writes its own, waits `STORE_SETTLE` seconds and reads it
back; it goes on only if its own token is still there (the stores are read-after-write
consistent). Two runs whose writes land within that time both read the later one, so only one
goes on. What remains: a run that stalls for longer than `STORE_SETTLE` between reading the
lock and writing its own can overwrite a winner that had already confirmed. The winner's next
heartbeat (within `beat_every` seconds) then finds the other token and stops its run with an
error, so two runs share a directory on a store for at most one heartbeat interval.

Losing the lock: each heartbeat first reads the file, and rewrites it only while it still
holds this run's token. When another owner has taken over (this process was suspended past
`stale_after`, or the store race above) the heartbeat records it, prints an error naming the
new owner and interrupts the main thread (`_lose`); `RunLock.check()`, which `RunDir.run_stage`
calls before a stage starts and before it is published, raises `RunLockLostError` from then on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from temporal_ray.storage.run_dir import TMP, RunDir

logger = logging.getLogger(__name__)

LOCK = "run.lock"
STALE_AFTER = 120.0
"""Seconds without a heartbeat after which a lock is a crashed run's (6 missed beats)."""
STORE_SETTLE = 2.0
"""Seconds an object store's lock is left before it is read back (module docstring)."""
TAKE_WITHIN = 10.0
"""Seconds a run keeps trying while other runs change the lock under it; then it refuses."""


class RunLockedError(RuntimeError):
    """Another live run holds the run directory."""


class RunLockLostError(RunLockedError):
    """Another run took the run directory over while this run was using it."""


class _LockFile(Protocol):
    """run.lock's bytes, and the two changes the lock makes to them."""

    def read(self) -> bytes | None: ...

    def create(self, data: bytes) -> bool:
        """Write `data` if there is no lock file; False when there is (or another won)."""

    def swap(self, expected: bytes, new: bytes | None) -> bool:
        """Replace (None: delete) the lock file if it still holds `expected`; else False."""


class _LinkedLockFile:
    """run.lock on a local file system, changed only atomically.

    Why exactly one run wins: run.lock is only ever created by `os.link` of a complete
    temporary file, which fails when the name exists, so a reader never sees a half-written
    lock and of the runs that find none exactly one creates it. It is only ever replaced or
    removed by `swap`, which first creates the marker `run.lock.tmp-swap-<hash of the bytes it
    expects>` the same exclusive way and then re-reads the lock: of the runs that found the
    same stale lock one holds the marker; the others fail to create it or, once it is gone,
    read a lock that changed and give up. (Any change of a content needs that content's
    marker, and no content comes twice: each holds a token and a time.) Renaming the stale
    file aside instead is not enough: a slower run can rename the lock a faster one has just
    created, and putting it back leaves a moment with no lock. The owner's heartbeat and
    release are swaps too, so they never overwrite or delete a lock that changed since they
    read it.

    What it does not cover: a marker left by a process killed inside a swap is removed once
    it is stale (same rule as the lock), and that removal is not atomic; it needs a crash
    inside a few system calls and then two runs in the same few, and the heartbeat still
    catches the outcome."""

    def __init__(self, path: str, owner: Callable[[], bytes], stale_after: float):
        # owner(): what a marker holds, the lock's content with a fresh beat (its staleness)
        self.path, self.owner, self.stale_after = path, owner, stale_after

    def read(self) -> bytes | None:
        try:
            with open(self.path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def create(self, data: bytes) -> bool:
        return _link_new(self.path, data)

    def swap(self, expected: bytes, new: bytes | None) -> bool:
        marker = f"{self.path}{TMP}swap-{hashlib.sha256(expected).hexdigest()[:16]}"
        if not self._hold(marker):
            return False
        try:
            if self.read() != expected:
                return False
            if new is None:
                os.unlink(self.path)
            else:
                os.replace(_write_temporary(self.path, new), self.path)
            return True
        finally:
            _unlink(marker)

    def _hold(self, marker: str) -> bool:
        if _link_new(marker, self.owner()):
            return True
        try:
            with open(marker, "rb") as f:
                holder = _parse(f.read())
        except FileNotFoundError:
            return False  # released this instant: the caller looks again
        if stale_reason(holder, self.stale_after) is None:
            return False
        _unlink(marker)  # its holder died inside a swap (see the class docstring)
        return _link_new(marker, self.owner())


class _StoreLockFile:
    """run.lock on an object store: written, then read back after `settle` seconds (best
    effort; what holds is in the module docstring)."""

    def __init__(self, run: RunDir, settle: float):
        self.run, self.path, self.settle = run, run.path(LOCK), settle

    def read(self) -> bytes | None:
        try:
            with self.run.fs.open_input_stream(self.path) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def create(self, data: bytes) -> bool:
        return self.read() is None and self._write_and_confirm(data)

    def swap(self, expected: bytes, new: bytes | None) -> bool:
        if self.read() != expected:
            return False
        if new is None:
            self.run.fs.delete_file(self.path)
            return True
        return self._write_and_confirm(new)

    def _write_and_confirm(self, data: bytes) -> bool:
        with self.run.fs.open_output_stream(self.path) as out:  # one object, whole or absent
            out.write(data)
        time.sleep(self.settle)
        return self.read() == data


class RunLock:
    """One run at a time per run directory: a lock file with the owner and a heartbeat.

    A second run refuses while the owner is alive. A run that died leaves the file behind but
    stops its heartbeat, so the lock goes stale after `stale_after` seconds (at once when the
    owner was a process on this host that no longer exists) and the next run takes it over.
    A run whose lock another run took over is stopped (`_lose`).
    """

    def __init__(self, run: RunDir, stale_after: float = STALE_AFTER, beat_every: float = 20.0,
                 settle: float = STORE_SETTLE):
        self.run, self.stale_after, self.beat_every = run, stale_after, beat_every
        self.owner = {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex}
        self.lost: dict[str, Any] | None = None
        """The owner that took the lock over, once the heartbeat has found one."""
        self._file = _lock_file(run, self._content, stale_after, settle)
        self._stop = threading.Event()
        self._signalling = threading.Lock()
        self._thread: threading.Thread | None = None

    def _content(self) -> bytes:
        return json.dumps({**self.owner, "beat": time.time()}).encode("utf-8")

    def acquire(self) -> RunLock:
        self._take()
        self.run.guard = self.check
        self._thread = threading.Thread(target=self._heartbeat, daemon=True,
                                        name=f"heartbeat of {self.run.uri}/{LOCK}")
        self._thread.start()
        return self

    def _take(self) -> None:
        deadline = time.monotonic() + TAKE_WITHIN
        while True:
            current = self._file.read()
            if current is None:
                if self._file.create(self._content()):
                    return
            else:
                holder = _parse(current)
                if stale_reason(holder, self.stale_after) is None:
                    raise RunLockedError(self._in_use(holder))
                if self._file.swap(current, self._content()):
                    return
            if time.monotonic() > deadline:
                raise RunLockedError(f"{self.run.uri}: other runs kept changing {LOCK} for "
                                     f"{TAKE_WITHIN:.0f} s while this one tried to take it")
            time.sleep(random.uniform(0.005, 0.02))  # another run is changing it: look again

    def _in_use(self, holder: dict[str, Any]) -> str:
        return (f"{self.run.uri} is in use by process {holder['pid']} on {holder['host']} "
                f"(heartbeat {time.time() - holder['beat']:.0f} s ago). Wait for it to finish, "
                f"stop it, or use another storage.run_dir. A crashed run's lock expires "
                f"{self.stale_after:.0f} s after its last heartbeat.")

    def check(self) -> None:
        """Raise `RunLockLostError` if another run has taken the lock over."""
        if self.lost is not None:
            raise self._lost_error(self.lost)

    def _lost_error(self, other: dict[str, Any]) -> RunLockLostError:
        return RunLockLostError(
            f"{self.run.uri} was taken over by process {other['pid']} on {other['host']} "
            f"while this run (process {self.owner['pid']} on {self.owner['host']}) used it: "
            f"this run's lock looked stale to it (no heartbeat for {self.stale_after:.0f} s: "
            f"was this process suspended?) or, on an object store, both took it at once. "
            f"This run stops; the other one goes on.")

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.beat_every):
            try:
                other = self._beat()
            except OSError as err:  # storage unreachable for a moment: the next beat retries
                logger.warning("%s: run lock heartbeat failed: %s", self.run.uri, err)
                continue
            if other is not None:
                self._lose(other)
                return

    def _beat(self) -> dict[str, Any] | None:
        """Rewrite the lock with a new beat if it is still ours; else the other owner."""
        for _ in range(3):  # a swap fails only while another run changes the file this instant
            current = self._file.read()
            if current is None:  # deleted by hand: ours again only if nobody else took it
                if self._file.create(self._content()):
                    return None
            elif _parse(current)["token"] != self.owner["token"]:
                return _parse(current)
            elif self._file.swap(current, self._content()):
                return None
            time.sleep(0.05)
        return None  # this beat missed; a lock goes stale only after several

    def _lose(self, other: dict[str, Any]) -> None:
        """Stop a run whose lock another run took over.

        The heartbeat is a daemon thread and cannot raise into the run, so it signals the main
        thread: SIGINT sent to that thread (`pthread_kill`) wakes it from a blocking call, and
        Python raises KeyboardInterrupt there, which unwinds the run through its `finally`
        blocks (Ray pools and trackers closed); `__exit__` turns it into `RunLockLostError`.
        SIGTERM would kill the process without that unwinding, and `_thread.interrupt_main`
        does not wake a thread blocked in a system call. Code that swallows the interrupt is
        still stopped at the next stage by `check()`."""
        self.lost = other
        logger.error("%s", self._lost_error(other))
        main = threading.main_thread().ident
        with self._signalling:  # never once release() has begun
            if not self._stop.is_set() and main is not None:
                signal.pthread_kill(main, signal.SIGINT)

    def release(self) -> None:
        with self._signalling:
            self._stop.set()
        if self._thread:
            self._thread.join()
        if self.run.guard == self.check:
            self.run.guard = None
        if self.lost is not None:
            return  # the file is the new owner's
        try:
            for _ in range(3):
                current = self._file.read()
                if current is None or _parse(current)["token"] != self.owner["token"]:
                    return
                if self._file.swap(current, None):
                    return
                time.sleep(0.05)
        except OSError as err:  # a full disk (a swap writes a marker): never hide the run's error
            logger.warning("%s: could not remove %s (%s); the next run on this host takes it "
                           "over at once", self.run.uri, LOCK, err)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: object) -> None:
        try:
            self.release()
        except KeyboardInterrupt as interrupt:  # our own stop arrived while releasing
            if self.lost is None:
                raise
            err = interrupt
            self.release()  # no second signal comes: the heartbeat has ended
        if self.lost is not None and not isinstance(err, RunLockLostError):
            raise self._lost_error(self.lost) from err


def stale_reason(holder: dict[str, Any], stale_after: float = STALE_AFTER,
                 now: float | None = None) -> str | None:
    """None when the lock `holder` (run.lock's content) belongs to a live run, else why it is
    stale. One rule for RunLock and `temporal-ray status`: a process on this host that no
    longer exists, or a heartbeat older than `stale_after` (the only test across hosts)."""
    age = (time.time() if now is None else now) - holder["beat"]
    if holder["host"] == socket.gethostname() and not _pid_alive(holder["pid"]):
        return f"process {holder['pid']} on this host is gone"
    if age >= stale_after:
        return f"no heartbeat for {age:.0f} s (stale after {stale_after:.0f} s)"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _parse(data: bytes) -> dict[str, Any]:
    """The holder in a lock file's bytes. An unreadable one (a machine that lost power while
    writing it) is a dead run's: stale at once."""
    try:
        holder = json.loads(data)
    except ValueError:
        holder = None
    if isinstance(holder, dict) and {"host", "pid", "token", "beat"} <= holder.keys():
        return holder
    return {"host": "?", "pid": -1, "token": "", "beat": 0.0}


def _lock_file(run: RunDir, owner: Callable[[], bytes], stale_after: float,
               settle: float) -> _LockFile:
    path = run.path(LOCK)
    if run.is_local() and _has_hard_links(path):
        return _LinkedLockFile(path, owner, stale_after)
    return _StoreLockFile(run, settle)


def _has_hard_links(path: str) -> bool:
    """Whether the file system under `path` makes hard links (FAT, some FUSE mounts don't)."""
    probe = _write_temporary(path, b"")
    try:
        os.link(probe, f"{probe}-link")
    except OSError:
        return False
    finally:
        _unlink(probe)
    _unlink(f"{probe}-link")
    return True


def _write_temporary(path: str, data: bytes) -> str:
    """A new file beside `path` holding `data` (whole before anyone links or renames it)."""
    tmp = f"{path}{TMP}{uuid.uuid4().hex[:12]}"
    with open(tmp, "xb") as f:
        f.write(data)
    return tmp


def _link_new(path: str, data: bytes) -> bool:
    """Create `path` holding `data` unless it exists: atomic, and never seen half-written."""
    tmp = _write_temporary(path, data)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        _unlink(tmp)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
