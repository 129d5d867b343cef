"""Shared fixtures: a tiny model built on the spot and one local Ray cluster per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    from temporal_ray.tiny import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-model")))


RAY_ENV = {"env_vars": {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}}


@pytest.fixture
def ray_cluster():
    """A real local Ray cluster; 4 logical CPUs so 2 engine actors or 2 trainer workers fit.
    Started once and shared; started again after a test that used a multi-node cluster
    (tests/cluster/test_multinode.py). address="local": never join another process's cluster.
    Ray shuts it down when the session exits."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=4, include_dashboard=False, runtime_env=RAY_ENV)
    yield


# ------------------------------------------------------------------ fault-injection table
# Tests marked `chaos` record what they injected and what survived; `make chaos` runs them
# and prints the table (the README keeps a copy).
CHAOS_ROWS: list[dict] = []


@pytest.fixture
def chaos_record():
    def record(fault: str, injected: int, survived: bool, rows_lost: int) -> None:
        CHAOS_ROWS.append({"fault": fault, "injected": injected, "survived": survived,
                           "rows_lost": rows_lost})
    return record


def pytest_terminal_summary(terminalreporter):
    if not CHAOS_ROWS:
        return
    width = max(len(r["fault"]) for r in CHAOS_ROWS)
    terminalreporter.write_sep("-", "fault injection")
    terminalreporter.write_line(f"{'fault':<{width}}  injected  survived  rows lost")
    for r in CHAOS_ROWS:
        terminalreporter.write_line(f"{r['fault']:<{width}}  {r['injected']:>8}  "
                                    f"{'yes' if r['survived'] else 'no':>8}  {r['rows_lost']:>9}")
