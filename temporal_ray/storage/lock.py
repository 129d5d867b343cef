"""One run at a time per run directory: `RunLock`, a lock file with the owner and a heartbeat."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from typing import Any

from temporal_ray.storage.run_dir import RunDir

LOCK = "run.lock"
STALE_AFTER = 120.0
"""Seconds without a heartbeat after which a lock is a crashed run's (6 missed beats)."""


class RunLockedError(RuntimeError):
    """Another live run holds the run directory."""


class RunLock:
    """One run at a time per run directory: a lock file with the owner and a heartbeat.

    A second run refuses while the owner is alive. A run that died leaves the file behind but
    stops its heartbeat, so the lock goes stale after `stale_after` seconds (at once when the
    owner was a process on this host that no longer exists) and the next run takes it over.
    """

    def __init__(self, run: RunDir, stale_after: float = STALE_AFTER, beat_every: float = 20.0):
        self.run, self.stale_after, self.beat_every = run, stale_after, beat_every
        self.owner = {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _holder(self) -> dict[str, Any] | None:
        text = self.run.read_text(LOCK)
        return json.loads(text) if text else None

    def _is_live(self, holder: dict[str, Any]) -> bool:
        return stale_reason(holder, self.stale_after) is None

    def _beat(self) -> None:
        self.run.write_text(LOCK, json.dumps({**self.owner, "beat": time.time()}))

    def acquire(self) -> RunLock:
        holder = self._holder()
        if holder and holder["token"] != self.owner["token"] and self._is_live(holder):
            raise RunLockedError(
                f"{self.run.uri} is in use by process {holder['pid']} on {holder['host']} "
                f"(heartbeat {time.time() - holder['beat']:.0f} s ago). Wait for it to finish, "
                f"stop it, or use another storage.run_dir. A crashed run's lock expires "
                f"{self.stale_after:.0f} s after its last heartbeat.")
        self._beat()
        self._thread = threading.Thread(target=self._heartbeat, daemon=True)
        self._thread.start()
        return self

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.beat_every):
            self._beat()

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        holder = self._holder()
        if holder and holder["token"] == self.owner["token"]:
            self.run.fs.delete_file(self.run.path(LOCK))

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


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
