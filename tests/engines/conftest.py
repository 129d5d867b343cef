"""Fixtures of the engine tests: killing a kept pool's engine mid-stage."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest


@pytest.fixture
def kill_a_pool_engine():
    """`with kill_a_pool_engine(after_s) as killed:` SIGKILLs one kept pool engine
    (`ray::PoolEngine`) `after_s` seconds into the block, while the block runs a stage;
    `killed` then holds when it was killed (empty if no engine was found)."""
    return _kill_a_pool_engine


@contextlib.contextmanager
def _kill_a_pool_engine(after_s: float) -> Iterator[list[float]]:
    import psutil

    killed: list[float] = []

    def kill() -> None:
        time.sleep(after_s)  # the stage has started sending blocks
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if " ".join(proc.info["cmdline"] or []).startswith("ray::PoolEngine"):
                os.kill(proc.info["pid"], signal.SIGKILL)
                killed.append(time.time())
                return

    killer = threading.Thread(target=kill)
    killer.start()
    try:
        yield killed
    finally:
        killer.join()
