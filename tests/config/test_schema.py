"""An experiment's own section: a subclass of Config, read with load_config(schema=...)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import Field

from temporal_ray.config import Config, ConfigError, Section, load_config, with_defaults

ROOT = Path(__file__).resolve().parents[2]
BASE = ["model.path=/m", "data.prompts=/p.jsonl"]


class ToySection(Section):
    size: int = Field(3, gt=0)
    added_later: str = "old behaviour"


class ToyConfig(Config):
    toy: ToySection = ToySection()


def test_the_schema_reads_its_own_section_and_the_core_config_refuses_it():
    cfg = load_config(None, [*BASE, "toy.size=5"], schema=ToyConfig)
    assert isinstance(cfg, ToyConfig) and cfg.toy.size == 5
    with pytest.raises(ConfigError, match="toy: unknown key"):
        load_config(None, [*BASE, "toy.size=5"])
    with pytest.raises(ConfigError, match="toy.size: Input should be greater than 0"):
        load_config(None, [*BASE, "toy.size=0"], schema=ToyConfig)


def test_a_subclass_section_comes_before_pools_and_eval():
    cfg = load_config(None, BASE, schema=ToyConfig)
    closing = ("pools", "tracking", "eval")
    core = [name for name in Config.model_fields if name not in closing]
    assert list(cfg.model_dump()) == [*core, "toy", *closing]
    assert list(yaml.safe_load(cfg.to_yaml())) == [*core, "toy", *closing]
    assert cfg.run_sections() == (*core, "toy", "pools")
    assert load_config(None, BASE).run_sections() == (*core, "pools")


def test_run_sections_hash_sees_the_subclass_section():
    cfg = load_config(None, BASE, schema=ToyConfig)
    other = load_config(None, [*BASE, "toy.size=4"], schema=ToyConfig)
    assert other.hash(*other.run_sections()) != cfg.hash(*cfg.run_sections())
    for observing in ("eval.max_new_tokens=7", "tracking.mlflow.enabled=false"):
        assert load_config(None, [*BASE, observing], schema=ToyConfig).hash(
            *cfg.run_sections()) == cfg.hash(*cfg.run_sections())


def test_with_defaults_fills_the_subclass_section_from_its_schema():
    saved = load_config(None, BASE, schema=ToyConfig).model_dump(mode="json")
    del saved["toy"]["added_later"]
    assert with_defaults(saved, ToyConfig)["toy"]["added_later"] == "old behaviour"
    assert "added_later" not in with_defaults(saved)["toy"]  # unknown to Config: as saved


def test_the_cli_reads_the_miniature_section(capsys):
    from temporal_ray.cli import main

    assert main(["show-config", str(ROOT / "configs" / "miniature.yaml"),
                 "miniature.ift=5"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["miniature"]["ift"] == 5


def test_wandb_tracking_is_a_config_switch():
    cfg = load_config(ROOT / "configs" / "tiny.yaml", [
        "tracking.wandb.enabled=true", "tracking.wandb.mode=offline",
        "tracking.wandb.entity=team"])
    assert cfg.tracking.wandb.enabled and cfg.tracking.wandb.project == "temporal-ray"
    assert (cfg.tracking.wandb.mode, cfg.tracking.wandb.entity) == ("offline", "team")
    with pytest.raises(ConfigError, match="tracking.wandb.mode"):
        load_config(ROOT / "configs" / "tiny.yaml", ["tracking.wandb.mode=sometimes"])
