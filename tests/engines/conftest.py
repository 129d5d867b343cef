"""Fixtures of the engine tests: killing a kept pool's engine mid-stage, and counting the texts
two engines wrote alike."""

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


@pytest.fixture
def same_texts():
    """`same_texts(mine, expected)`: how many of `expected`'s texts `mine` holds alike, keyed
    the same. A random tiny model writes byte tokens that end mid-character; transformers'
    decode writes U+FFFD for each stray byte, while vLLM's incremental detokenizer holds back
    the bytes of a character it has not finished, so the two texts of the same tokens differ
    by replacement characters only. Those are left out of the comparison."""
    return _same_texts


def _same_texts(mine: dict, expected: dict) -> int:
    def printable(text: str) -> str:
        return text.replace("\ufffd", "")

    assert set(mine) == set(expected)
    return sum(printable(mine[key]) == printable(expected[key]) for key in expected)
