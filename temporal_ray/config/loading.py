"""Reading a config: YAML files (a file may start from another with `base: other.yaml` and
change only what differs), dotted overrides, errors that name the field, and the comparison of
a saved config with the current one.

An unknown key, a wrong type or a missing required value raises `ConfigError`, which names the
field and the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

from temporal_ray.config.experiment import Config

ConfigT = TypeVar("ConfigT", bound=Config)


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message says which field and why."""


def apply_override(tree: dict[str, Any], override: str) -> None:
    """Set one `a.b.c=value` override in a nested dict; the value is parsed as YAML."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} is not of the form section.field=value")
    dotted, raw = override.split("=", 1)
    keys = dotted.strip().split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {key!r} is a value, not a section")
        node = child
    node[keys[-1]] = yaml.safe_load(raw) if raw.strip() else None


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"invalid config ({source}):"]
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(f"  {field}: unknown key")
        elif item["type"] == "missing":
            lines.append(f"  {field}: required value is missing")
        elif item["type"] == "value_error":  # a check across fields: its message says it all
            lines.append(f"  {field}: {item['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"  {field}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def _read_tree(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML config file as a dict; a top-level `base: other.yaml` (relative to this file)
    is read first and this file's values are merged over it."""
    if path.resolve() in seen:
        raise ConfigError(f"config file {path}: `base` files include each other")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from err
    try:
        tree = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    base = tree.pop("base", None)
    if base is None:
        return tree
    return _merge(_read_tree(path.parent / str(base), seen + (path.resolve(),)), tree)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = _merge(merged[key], value)
        merged[key] = value
    return merged


def load_config(path: str | Path | None, overrides: list[str] = (),
                schema: type[ConfigT] = Config) -> ConfigT:
    """Read a YAML config, apply dotted overrides and validate the result as `schema` (an
    experiment's subclass of `Config` reads its own section too)."""
    tree: dict[str, Any] = {}
    source = "overrides"
    if path is not None:
        source = str(path)
        tree = _read_tree(Path(path))
    for override in overrides:
        apply_override(tree, override)
    if overrides:
        source += " + overrides " + " ".join(overrides)
    try:
        return schema.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_describe(err, source)) from None


def changed_fields(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the fields whose values differ between two config dicts."""
    changed = []
    for key in sorted(set(old) | set(new)):
        name = f"{prefix}{key}"
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += changed_fields(a, b, f"{name}.")
        elif a != b:
            changed.append(name)
    return changed


def with_defaults(saved: dict[str, Any], schema: type[Config] = Config) -> dict[str, Any]:
    """A saved config's sections with the fields a later version added, at their defaults
    (which keep the old behaviour), so that a resume compares like with like. `schema` is the
    class of the config it is compared with, so that an experiment's own section is filled too."""
    filled = {}
    for name, section in saved.items():
        field = schema.model_fields.get(name)
        try:
            filled[name] = field.annotation.model_validate(section).model_dump(mode="json")
        except (AttributeError, ValidationError):
            filled[name] = section  # unknown or no longer valid: compare as saved
    return filled
