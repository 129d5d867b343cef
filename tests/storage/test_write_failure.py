"""A stage whose write fails for want of room (a real EFBIG: this process's file size limit
lowered for the write) publishes nothing, leaves the stages before it as they were, and stops
with an error naming the stage and the cause; with room again the same call publishes it.
The failures Ray hands back (a task's, a Train worker's) are found inside their wrappers."""

from __future__ import annotations

import errno
import resource
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from ray.exceptions import RayTaskError
from ray.train.v2._internal.exceptions import UserExceptionWithTraceback
from ray.train.v2.api.exceptions import WorkerGroupError

from temporal_ray.storage.files import resolve, write_rows
from temporal_ray.storage.run_dir import RunDir
from temporal_ray.storage.write_failure import (
    StageWriteError,
    WriteFailure,
    find_write_failure,
)

LIMIT = 1 << 20


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """This process's soft RLIMIT_FSIZE at `limit` (Python ignores SIGXFSZ, so a write past
    it fails with EFBIG); the old limit comes back after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def produce_candidates(tmp: str) -> dict[str, int]:
    write_rows([{"prompt_id": "p0", "text": "a small file that fits"}],
               f"{tmp}/data/part-0.parquet")
    fs, path = resolve(f"{tmp}/data/part-1.bin")
    with fs.open_output_stream(path) as out:  # past the limit: EFBIG mid-stage
        out.write(b"x" * (2 * LIMIT))
    return {"rows": 1}


def test_a_stage_past_the_file_size_limit_publishes_nothing_and_says_which(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    before = run.run_stage("iter_0/prompts", lambda tmp: {"rows": 0}, kind="prompts")
    with file_size_limit(LIMIT), pytest.raises(StageWriteError) as stopped:
        run.run_stage("iter_1/candidates_present", produce_candidates, kind="generate",
                      role="present")
    message = str(stopped.value)
    assert message.startswith("iteration 1, generate (present), stage "
                              "iter_1/candidates_present: File too large writing "
                              f"{tmp_path}/run/iter_1/candidates_present: "), message
    assert "ulimit -f" in message and "run the same command again to resume" in message
    assert stopped.value.failure.errno == errno.EFBIG
    assert run.finished("iter_1/candidates_present") is None
    assert list((tmp_path / "run" / "iter_1").iterdir()) == []  # no half stage, no .tmp-
    assert run.reusable("iter_0/prompts").manifest == before.manifest

    again = run.run_stage("iter_1/candidates_present", produce_candidates, kind="generate",
                          role="present")
    assert not again.reused and set(again.files) == {"data/part-0.parquet", "data/part-1.bin"}


def test_the_write_failure_is_found_inside_what_ray_raises():
    full = OSError(errno.ENOSPC, "Failed to open local file '/r/iter_0/a.parquet'. Detail: "
                                 "[errno 28] No space left on device")
    task = RayTaskError("write", 'File "/code/stage.py", line 1', full).as_instanceof_cause()
    assert find_write_failure(task) == WriteFailure(errno.ENOSPC, "/r/iter_0/a.parquet")
    workers = WorkerGroupError("a worker failed", {0: UserExceptionWithTraceback(
        RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos"), "tb"),
        1: UserExceptionWithTraceback(full, "tb")})
    assert find_write_failure(workers).errno == errno.ENOSPC
    # safetensors says it in words only, naming no file
    rust = RuntimeError('Error while serializing: IoError(Os { code: 27, kind: FileTooLarge, '
                        'message: "File too large" })')
    assert find_write_failure(rust).errno == errno.EFBIG
    assert find_write_failure(RuntimeError("boom")) is None
    assert find_write_failure(OSError(errno.ENOENT, "No such file")) is None
