"""`temporal-ray study`: seeds derived from the config, equal compute, resume per seed, and
(slow) a study of the shortened miniature's real run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from temporal_ray.cli import main
from temporal_ray.config import ConfigError, load_config
from temporal_ray.miniature import study as study_module
from temporal_ray.miniature.config import MiniatureRunConfig
from temporal_ray.miniature.study import (
    SEED_STRIDE,
    check_equal_compute,
    run_study,
    seed_config,
)

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "miniature.yaml"


def _seed_fields(tree: Any, path: str = "") -> dict[str, int]:
    """Every field named `seed` in a dumped config, by dotted path, at any depth."""
    found = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            where = f"{path}.{key}" if path else str(key)
            if key == "seed":
                found[where] = value
            found.update(_seed_fields(value, where))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            found.update(_seed_fields(value, f"{path}[{i}]"))
    return found


def _config(*overrides: str) -> MiniatureRunConfig:
    return load_config(CONFIG, list(overrides), schema=MiniatureRunConfig)


def test_every_seed_field_is_shifted_and_nothing_else_changes(tmp_path):
    cfg = _config("judge.engine={kind: hf}")  # a nested optional section, walked too
    before = cfg.model_dump(mode="json")
    derived = seed_config(cfg, 3, str(tmp_path)).model_dump(mode="json")
    seeds = _seed_fields(before)
    # The ones known today; a new seed field shows up here and must be shifted as well.
    assert {"miniature.seed", "generation.seed", "sft.seed", "dpo.seed"} <= set(seeds)
    shifted = _seed_fields(derived)
    assert shifted == {path: value + 3 * SEED_STRIDE for path, value in seeds.items()}
    assert derived["storage"]["run_dir"] == f"{tmp_path}/seed_3"
    for section in before:
        if section != "storage":
            assert _drop_seeds(derived[section]) == _drop_seeds(before[section]), section
    assert cfg.model_dump(mode="json") == before  # the study's own config is left alone


def _drop_seeds(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _drop_seeds(v) for k, v in tree.items() if k != "seed"}
    return [_drop_seeds(v) for v in tree] if isinstance(tree, list) else tree


def test_seed_zero_keeps_the_miniatures_seeds():
    cfg = _config()
    assert _seed_fields(seed_config(cfg, 0, "/x").model_dump(mode="json")) == _seed_fields(
        cfg.model_dump(mode="json"))


def test_unequal_compute_is_refused_by_the_command(tmp_path, capsys):
    check_equal_compute(_config().miniature.iterations)  # 4 against 2: equal
    with pytest.raises(ConfigError, match="equal compute"):
        check_equal_compute(_config("miniature.iterations={self_rewarding: 3, temporal: 2}")
                            .miniature.iterations)
    with pytest.raises(ConfigError, match="equal compute"):
        check_equal_compute(_config("miniature.iterations={temporal: 2}").miniature.iterations)
    code = main(["study", str(CONFIG), "miniature.iterations={self_rewarding: 3, temporal: 1}",
                 "--seeds", "2", "--out", str(tmp_path / "s")])
    assert code == 2
    assert "equal compute" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_finished_seeds_are_read_and_only_the_rest_run(tmp_path, monkeypatch,
                                                       make_seed_results):
    root = tmp_path / "study"
    (root / "seed_0").mkdir(parents=True)
    (root / "seed_0" / "results.json").write_text(json.dumps(make_seed_results(0)))
    ran = []

    def fake_miniature(cfg: MiniatureRunConfig, force: bool = False) -> None:
        ran.append((cfg.miniature.seed, cfg.dpo.seed, cfg.storage.run_dir))
        seed = cfg.miniature.seed // SEED_STRIDE
        (Path(cfg.storage.run_dir) / "results.json").write_text(json.dumps(make_seed_results(seed)))

    monkeypatch.setattr(study_module, "run_miniature", fake_miniature)
    summary = run_study(_config(), seeds=3, out=str(root))
    assert ran == [(1000, 1000, f"{root}/seed_1"), (2000, 2000, f"{root}/seed_2")]
    assert summary["seeds"] == [0, 1, 2]
    assert json.loads((root / "study.json").read_text()) == summary
    assert "## The paper's claims" in (root / "study.md").read_text()
    assert (root / "study.png").read_bytes()[:4] == b"\x89PNG"
    assert not (root / "run.lock").exists()

    # A rerun runs nothing; a changed config is refused unless forced.
    ran.clear()
    assert run_study(_config(), seeds=3, out=str(root)) == summary and ran == []
    from temporal_ray.run.session import ConfigChangedError

    with pytest.raises(ConfigChangedError, match="dpo.beta"):
        run_study(_config("dpo.beta=0.2"), seeds=3, out=str(root))
    assert run_study(_config("dpo.beta=0.2"), seeds=3, out=str(root), force=True)["seeds"]


def test_default_study_directory_sits_beside_the_run_directory(tmp_path):
    cfg = _config(f"storage.run_dir={tmp_path}/mini/")
    assert study_module.study_root(cfg, None) == f"{tmp_path}/mini-study"
    with pytest.raises(ConfigError, match="local"):
        study_module.study_root(cfg, "s3://bucket/study")


@pytest.mark.slow
def test_a_study_of_the_real_miniature_and_its_rerun_is_a_no_op(ci_study, ray_cluster,
                                                                monkeypatch):
    # The study over the CI-sized miniature's real results (conftest.py: the smallest
    # equal-compute pair of runs, 2 Self-Rewarding iterations against 1 temporal one), seed 0.
    root, cfg, summary = ci_study.root, ci_study.cfg, ci_study.results

    assert summary["seeds"] == [0]
    assert json.loads((root / "study.json").read_text()) == summary
    names = [(r["method"], r["index"], r["compute"]) for r in summary["checkpoints"]]
    assert names == [("m0", 0, 0), ("self_rewarding", 1, 1), ("self_rewarding", 2, 2),
                     ("temporal", 1, 2)]
    assert [(r["method"], r["iteration"]) for r in summary["iterations"]] == [
        ("self_rewarding", 0), ("self_rewarding", 1), ("temporal", 0)]
    seed_0 = json.loads((root / "seed_0" / "results.json").read_text())
    m0 = next(c for c in seed_0["checkpoints"] if c["index"] == 0)
    accuracy = summary["checkpoints"][0]["metrics"]["accuracy"]
    assert accuracy["n"] == 1 and accuracy["mean"] == m0["answers"]["accuracy"]
    for row in summary["checkpoints"] + summary["iterations"]:
        assert row["seeds"] == 1
    comparison = summary["comparison"]
    assert comparison["temporal"] == comparison["self_rewarding"] == 2
    assert [c["verdict"] in ("reproduced", "not reproduced", "inconclusive")
            for c in summary["claims"]] == [True] * 3
    report = (root / "study.md").read_text()
    for section in ("## The paper's claims", "## Final checkpoints, paired by seed",
                    "| M0 (SFT) | 0 | 1 |", "| Self-Rewarding M2 | 2 | 1 |",
                    "| Temporal M1 | 2 | 1 |", "| Self-Rewarding | 1 | 1 |"):
        assert section in report, section
    assert (root / "study.png").read_bytes()[:4] == b"\x89PNG"

    # A rerun reads the seed's results and runs nothing.
    def no_run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a finished seed ran again")

    monkeypatch.setattr(study_module, "run_miniature", no_run)
    started = time.monotonic()
    assert run_study(cfg, seeds=1, out=str(root)) == summary
    assert time.monotonic() - started < 30
