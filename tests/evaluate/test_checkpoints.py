"""Finding a run's checkpoints from the summary.json and config.yaml its runs write."""

from __future__ import annotations

import json

import pytest
import yaml

from temporal_ray.evaluate.checkpoints import (
    NoCheckpointsError,
    discover_checkpoints,
    select,
)


def write_method_run(root, method: str, m0: str, iterations: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump({"model": {"path": m0}}))
    (root / "summary.json").write_text(json.dumps({"method": method, "iterations": [
        {"iteration": i, "model": f"{root}/iter_{i}/model"} for i in range(iterations)]}))


def test_single_method_run(tmp_path):
    write_method_run(tmp_path, "temporal", "/models/m0", 2)
    found = discover_checkpoints(str(tmp_path))
    assert [(c.name, c.method, c.iteration, c.dpo_runs) for c in found] == [
        ("m0", "", 0, 0), ("m1", "temporal", 1, 2), ("m2", "temporal", 2, 4)]
    assert found[0].path == "/models/m0"
    assert found[2].path == f"{tmp_path}/iter_1/model"


def test_comparison_run_shares_m0(tmp_path):
    write_method_run(tmp_path / "self_rewarding", "self_rewarding", "/models/m0", 2)
    write_method_run(tmp_path / "temporal", "temporal", "/models/m0", 1)
    found = discover_checkpoints(str(tmp_path))
    names = [c.name for c in found]
    assert names[0] == "m0" and sorted(names[1:]) == [
        "self_rewarding/m1", "self_rewarding/m2", "temporal/m1"]
    by_name = {c.name: c for c in found}
    assert by_name["self_rewarding/m2"].dpo_runs == 2 == by_name["temporal/m1"].dpo_runs
    assert [c.name for c in select(found, ["temporal/m1", "m0"])] == ["temporal/m1", "m0"]
    assert select(found, []) == found


def test_unknown_names_empty_runs_and_different_starts_are_refused(tmp_path):
    with pytest.raises(NoCheckpointsError, match="holds no finished run"):
        discover_checkpoints(str(tmp_path / "empty"))
    write_method_run(tmp_path / "a" / "self_rewarding", "self_rewarding", "/models/x", 1)
    write_method_run(tmp_path / "a" / "temporal", "temporal", "/models/y", 1)
    with pytest.raises(NoCheckpointsError, match="different models"):
        discover_checkpoints(str(tmp_path / "a"))
    write_method_run(tmp_path / "b", "temporal", "/models/m0", 1)
    with pytest.raises(NoCheckpointsError, match=r"no checkpoint named m7 \(this run has "
                                                 r"m0, m1\)"):
        select(discover_checkpoints(str(tmp_path / "b")), ["m7"])
