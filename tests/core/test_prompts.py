"""temporal_ray.core.prompts: the per-iteration chunks (reading prompts: tests/inputs/)."""

from __future__ import annotations

from collections import Counter

import pytest

from temporal_ray.core.prompts import iteration_chunk

# ------------------------------------------------------------------------ iteration_chunk


def make_rows(n: int) -> list[dict[str, str]]:
    return [{"prompt_id": f"p{i}", "prompt": f"prompt {i}"} for i in range(n)]


def ids(chunk: list[dict[str, str]]) -> list[str]:
    return [row["prompt_id"] for row in chunk]


def test_chunks_are_consecutive_in_file_order():
    rows = make_rows(6)
    assert ids(iteration_chunk(rows, 0, 2)) == ["p0", "p1"]
    assert ids(iteration_chunk(rows, 1, 2)) == ["p2", "p3"]
    assert ids(iteration_chunk(rows, 2, 2)) == ["p4", "p5"]


def test_chunks_wrap_around():
    rows = make_rows(5)
    assert ids(iteration_chunk(rows, 2, 2)) == ["p4", "p0"]
    assert ids(iteration_chunk(rows, 3, 2)) == ["p1", "p2"]
    assert ids(iteration_chunk(rows, 4, 2)) == ["p3", "p4"]
    assert ids(iteration_chunk(rows, 5, 2)) == ["p0", "p1"]


def test_wrap_around_uses_every_prompt_equally():
    rows = make_rows(5)
    seen = Counter(pid for i in range(5) for pid in ids(iteration_chunk(rows, i, 3)))
    assert seen == {f"p{i}": 3 for i in range(5)}


@pytest.mark.parametrize("n, size", [(5, 2), (7, 3), (4, 4), (3, 10), (1, 1), (1, 5)])
def test_chunk_size_and_no_repeats(n, size):
    rows = make_rows(n)
    for iteration in range(4):
        chunk = iteration_chunk(rows, iteration, size)
        assert len(chunk) == min(size, n)
        assert len(set(ids(chunk))) == len(chunk)


def test_chunk_larger_than_file_is_the_whole_file():
    rows = make_rows(3)
    for iteration in range(3):
        assert iteration_chunk(rows, iteration, 10) == rows


def test_chunk_rows_are_the_loaded_rows():
    rows = make_rows(4)
    chunk = iteration_chunk(rows, 1, 3)
    assert chunk == [rows[3], rows[0], rows[1]]
