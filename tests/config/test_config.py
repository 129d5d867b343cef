"""temporal_ray.config: YAML files, dotted overrides, errors that name the field."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from temporal_ray.config import (
    Config,
    ConfigError,
    EngineConfig,
    Method,
    apply_override,
    changed_fields,
    load_config,
)
from temporal_ray.miniature.config import MiniatureRunConfig

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml")) + sorted((ROOT / "configs").glob("*.yml"))
TINY = ROOT / "configs" / "tiny.yaml"
# The one experiment with a section of its own; every other file is the core config's.
SCHEMAS = {"miniature.yaml": MiniatureRunConfig}

MINIMAL = "model:\n  path: some/model\ndata:\n  prompts: prompts.jsonl\n"


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path, overrides=()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, list(overrides))
    return str(info.value)


# ------------------------------------------------------------------------------ loading


def test_configs_directory_has_yaml_files():
    assert TINY in CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads(path):
    cfg = load_config(path, schema=SCHEMAS.get(path.name, Config))
    assert isinstance(cfg, Config)
    assert cfg.model.path and cfg.data.prompts


def test_tiny_config_values():
    cfg = load_config(TINY)
    assert cfg.model.path == "runs/tiny-model"
    assert cfg.data.prompts == "temporal_ray/assets/tiny_prompts.jsonl"
    assert cfg.data.prompts_per_iteration == 16
    assert cfg.data.prompt_field == "prompt"  # default, not in the file
    assert cfg.method.name is Method.TEMPORAL
    assert cfg.method.iterations == 2
    assert cfg.judge.kind == "rule"
    assert cfg.judge.rule == "temporal_ray.miniature.rules:known_words"
    assert cfg.dpo.beta == 0.1


def test_tiny_prompt_file_exists():
    assert (ROOT / load_config(TINY).data.prompts).is_file()


def test_defaults_follow_method_md(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.method.name is Method.TEMPORAL
    assert (cfg.generation.temperature, cfg.generation.top_p) == (0.7, 0.9)
    assert cfg.generation.max_new_tokens == 1024
    assert cfg.judge.samples == 3
    pattern = re.compile(cfg.judge.score_pattern)
    assert pattern.search("Score: 4").group(1) == "4"
    assert pattern.search("Score: 3.5").group(1) == "3.5"
    assert (cfg.judge.min_score, cfg.judge.max_score) == (0.0, 5.0)
    assert cfg.dpo.beta == 0.1


def test_config_is_frozen():
    cfg = load_config(TINY)
    with pytest.raises(ValidationError, match="frozen"):
        cfg.dpo.beta = 0.5
    assert cfg.dpo.beta == 0.1


def test_to_yaml_round_trips(tmp_path):
    cfg = load_config(TINY, ["method.name=self_rewarding"])
    again = load_config(write(tmp_path, cfg.to_yaml()))
    assert again == cfg


# ---------------------------------------------------------------------------- overrides


def test_dotted_overrides():
    base = load_config(TINY)
    cfg = load_config(TINY, ["dpo.beta=0.2", "method.iterations=3",
                             "method.name=self_rewarding"])
    assert cfg.dpo.beta == 0.2
    assert cfg.method.iterations == 3
    assert cfg.method.name is Method.SELF_REWARDING
    assert cfg.dpo.lr == base.dpo.lr
    assert cfg.model == base.model


def test_later_override_wins():
    assert load_config(TINY, ["dpo.beta=0.2", "dpo.beta=0.3"]).dpo.beta == 0.3


def test_override_values_are_parsed_as_yaml():
    cfg = load_config(TINY, ["dpo.use_gpu=true", "dpo.lr=1e-6", "ray.num_cpus=",
                             "ray.address=10.0.0.1:6379"])
    assert cfg.dpo.use_gpu is True
    assert cfg.dpo.lr == pytest.approx(1e-6)  # YAML 1.1 reads "1e-6" as a string
    assert cfg.ray.num_cpus is None           # an empty value means null
    assert cfg.ray.address == "10.0.0.1:6379"


def test_override_value_may_contain_equals_sign():
    cfg = load_config(TINY, ["storage.run_dir=runs/a=b"])
    assert cfg.storage.run_dir == "runs/a=b"


def test_overrides_without_file(tmp_path):
    cfg = load_config(None, ["model.path=m", "data.prompts=p.jsonl", "judge.samples=5"])
    assert (cfg.model.path, cfg.data.prompts, cfg.judge.samples) == ("m", "p.jsonl", 5)


def test_override_creates_missing_section(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL), ["engine.kind=vllm"])
    assert cfg.engine.kind == "vllm"


def test_apply_override_on_plain_dict():
    tree = {"dpo": {"beta": 0.1}}
    apply_override(tree, "dpo.beta=0.5")
    apply_override(tree, "method.iterations=4")
    assert tree == {"dpo": {"beta": 0.5}, "method": {"iterations": 4}}


def test_numeric_looking_override_of_string_field():
    assert load_config(TINY, ["storage.run_dir=2024"]).storage.run_dir == "2024"


# ------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("override, field", [
    ("dpo.betta=0.2", "dpo.betta"),
    ("optimizer.lr=0.1", "optimizer"),
    ("model.name=x", "model.name"),
])
def test_unknown_key_in_override_names_the_key(override, field):
    message = config_error(TINY, [override])
    assert f"{field}: unknown key" in message
    assert override in message


def test_unknown_key_in_file_names_key_and_file(tmp_path):
    path = write(tmp_path, MINIMAL + "dpo:\n  bta: 0.1\n")
    message = config_error(path)
    assert "dpo.bta: unknown key" in message
    assert str(path) in message


@pytest.mark.parametrize("override, field", [
    ("dpo.beta=abc", "dpo.beta"),
    ("method.iterations=many", "method.iterations"),
    ("method.iterations=2.5", "method.iterations"),
    ("method.name=bogus", "method.name"),
    ("dpo.zero_stage=4", "dpo.zero_stage"),
    ("engine.kind=sglang", "engine.kind"),
    ("generation.samples=0", "generation.samples"),   # constraint gt=0
    ("dpo.beta=-1", "dpo.beta"),
    ("generation.top_p=1.5", "generation.top_p"),
    ("data=just-a-string", "data"),
])
def test_wrong_type_names_the_field(override, field):
    message = config_error(TINY, [override])
    assert f"  {field}: " in message
    assert "unknown key" not in message and "missing" not in message


def test_wrong_type_shows_the_bad_value():
    assert "'abc'" in config_error(TINY, ["dpo.beta=abc"])


def test_several_errors_are_all_reported():
    message = config_error(TINY, ["dpo.beta=abc", "method.iterations=0"])
    assert "dpo.beta" in message and "method.iterations" in message


def test_missing_model_section_names_it(tmp_path):
    path = write(tmp_path, "data:\n  prompts: p.jsonl\n")
    message = config_error(path)
    assert "model: required value is missing" in message
    assert "data" not in message.split("\n", 1)[1]


def test_missing_required_field_inside_section(tmp_path):
    message = config_error(write(tmp_path, "model: {}\ndata:\n  prompts: p.jsonl\n"))
    assert "model.path: required value is missing" in message


def test_empty_file_reports_both_required_sections(tmp_path):
    message = config_error(write(tmp_path, ""))
    assert "model: required value is missing" in message
    assert "data: required value is missing" in message


def test_rule_judge_without_rule_names_the_field():
    message = config_error(TINY, ["judge.rule="])
    assert "judge" in message and "judge.rule" in message


@pytest.mark.parametrize("override", ["dpo.beta", "dpo.beta 0.2", ""])
def test_bad_override_syntax(override):
    message = config_error(TINY, [override])
    assert repr(override) in message
    assert "section.field=value" in message


def test_override_into_a_value_is_refused():
    message = config_error(TINY, ["dpo.beta.x=1"])
    assert "'beta' is a value, not a section" in message


@pytest.mark.parametrize("text", ["- model\n- data\n", "just a string\n", "42\n"])
def test_file_that_is_not_a_mapping(tmp_path, text):
    path = write(tmp_path, text)
    message = config_error(path)
    assert "must hold a mapping" in message
    assert str(path) in message


def test_invalid_yaml(tmp_path):
    path = write(tmp_path, "model: [unclosed\n")
    message = config_error(path)
    assert "not valid YAML" in message and str(path) in message


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    message = config_error(path)
    assert "cannot read config file" in message and str(path) in message


# ------------------------------------------------------------------------ changed_fields


def test_changed_fields_between_configs():
    old = load_config(TINY).model_dump(mode="json")
    new = load_config(TINY, ["dpo.beta=0.2", "method.iterations=3"]).model_dump(mode="json")
    assert changed_fields(old, new) == ["dpo.beta", "method.iterations"]
    assert changed_fields(old, old) == []


def test_changed_fields_added_removed_and_replaced_keys():
    old = {"a": {"x": 1, "y": 2}, "b": 1, "c": {"z": 1}}
    new = {"a": {"x": 1, "w": 3}, "b": 1, "c": 5, "d": 0}
    assert changed_fields(old, new) == ["a.w", "a.y", "c", "d"]


def test_changed_fields_nested_prefix():
    assert changed_fields({"a": {"b": {"c": 1}}}, {"a": {"b": {"c": 2}}}) == ["a.b.c"]


# ---------------------------------------------------------------------------------- hash


def test_hash_is_stable_for_equal_configs(tmp_path):
    first, second = load_config(TINY), load_config(TINY)
    assert first.hash() == second.hash()
    assert len(first.hash()) == 16 and int(first.hash(), 16) >= 0
    again = load_config(write(tmp_path, first.to_yaml()))
    assert again.hash() == first.hash()


def test_hash_changes_with_any_field():
    base = load_config(TINY)
    assert load_config(TINY, ["dpo.beta=0.2"]).hash() != base.hash()
    assert load_config(TINY, ["storage.run_dir=elsewhere"]).hash() != base.hash()


def test_hash_of_sections_only_sees_those_sections():
    base = load_config(TINY)
    other = load_config(TINY, ["method.iterations=5", "storage.run_dir=elsewhere"])
    assert other.hash("dpo") == base.hash("dpo")
    assert other.hash("dpo", "judge") == base.hash("dpo", "judge")
    assert other.hash("method") != base.hash("method")
    assert load_config(TINY, ["dpo.beta=0.2"]).hash("dpo") != base.hash("dpo")
    assert base.hash("dpo", "judge") == base.hash("judge", "dpo")
    assert base.hash("dpo") != base.hash("judge")


def test_hash_is_the_same_in_another_process():
    code = ("from temporal_ray.config.loading import load_config; "
            f"print(load_config({str(TINY)!r}).hash(), load_config({str(TINY)!r}).hash('dpo'))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True, cwd=ROOT).stdout.split()
    cfg = load_config(TINY)
    assert out == [cfg.hash(), cfg.hash("dpo")]


def test_label_smoothing_is_for_the_sigmoid_loss_only():
    from temporal_ray.config import ConfigError

    cfg = load_config(None, ["model.path=/m", "data.prompts=/p", "dpo.label_smoothing=0.1"])
    assert cfg.dpo.label_smoothing == 0.1
    with pytest.raises(ConfigError, match="label_smoothing"):
        load_config(None, ["model.path=/m", "data.prompts=/p", "dpo.loss=ipo",
                           "dpo.label_smoothing=0.1"])


def test_a_continued_adapter_needs_the_precomputed_reference():
    from temporal_ray.config import ConfigError

    one_base = ["model.path=/m", "data.prompts=/p", "dpo.lora.enabled=true",
                "dpo.lora.base=initial"]
    assert load_config(None, one_base).dpo.lora.base == "initial"
    with pytest.raises(ConfigError, match="precomputed"):
        load_config(None, [*one_base, "dpo.reference=resident"])
    assert load_config(None, ["model.path=/m", "data.prompts=/p", "dpo.lora.enabled=true",
                              "dpo.reference=resident"]).dpo.lora.base == "start"


def test_base_file_is_merged_under(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "model: {path: m}\ndata: {prompts: p}\ndpo: {beta: 0.2, lr: 1.0e-5}\n")
    (tmp_path / "lora.yaml").write_text(
        "base: base.yaml\ndpo: {lr: 1.0e-4, lora: {enabled: true}}\n")
    cfg = load_config(tmp_path / "lora.yaml", ["dpo.lora.rank=8"])
    assert (cfg.dpo.beta, cfg.dpo.lr) == (0.2, 1e-4)
    assert cfg.dpo.lora.enabled and cfg.dpo.lora.rank == 8
    assert cfg.model.path == "m"


def test_base_files_that_include_each_other_are_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="include each other"):
        load_config(tmp_path / "a.yaml")


# ------------------------------------------------------------------------------- pools
def test_a_role_pool_is_the_engine_with_some_fields_changed():
    from temporal_ray.core.roles import Role

    cfg = load_config(TINY, ["pools={past: {actors: 1}, future: {max_actors: 4}}"])
    assert cfg.engine_for(Role.PRESENT) is cfg.engine
    past, future = cfg.engine_for(Role.PAST), cfg.engine_for(Role.FUTURE)
    assert (past.actors, past.batch_size) == (1, cfg.engine.batch_size)
    assert future.pool_size == (cfg.engine.actors, 4)


@pytest.mark.parametrize(("override", "message"), [
    ("pools={past: {actorz: 1}}", "pools.past: actorz: Extra inputs are not permitted"),
    ("pools={future: {max_actors: 1}}", "pools.future: engine.max_actors .1. is below "
                                        "engine.actors .2."),
    ("pools={judge: {actors: 1}}", "pools.judge.*'past', 'present' or 'future'"),
])
def test_bad_role_pools_name_role_and_field(override, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(TINY, [override])
    assert "got {'model'" not in str(err.value)  # a cross-field check does not dump the tree


def test_zero_options_come_from_the_command_line_as_a_mapping():
    cfg = load_config(TINY, ["dpo.zero_options={stage3_prefetch_bucket_size: 50000000}"])
    assert cfg.dpo.zero_options == {"stage3_prefetch_bucket_size": 50_000_000}
    assert "dpo.zero_options" in config_error(TINY, ["dpo.zero_options={bogus_knob: 1}"])


def test_blocks_hold_batches_per_block_batches_unless_the_stage_is_too_small():
    engine = EngineConfig(actors=2, batch_size=16, batches_per_block=4)
    assert engine.block_rows() == engine.block_rows(10_000) == 64  # unknown or large stage
    assert engine.block_rows(128) == 64  # exactly a block of 4 batches for each actor
    assert engine.block_rows(100) == 64  # 2 blocks: 64 and 36 rows
    assert engine.block_rows(64) == 32  # 2 blocks of 2 batches, not one of 4
    assert engine.block_rows(20) == 16  # never less than a batch
    assert engine.block_rows(1) == 16
    # A pool that may grow counts the actors it may grow to.
    assert engine.model_copy(update={"max_actors": 4}).block_rows(128) == 32
    assert EngineConfig(batch_size=8, batches_per_block=1).block_rows(1000) == 8
