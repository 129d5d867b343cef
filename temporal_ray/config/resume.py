"""What a resume may change: a saved config compared with the current one, field by field,
each change marked placement-only (a field typed `Placement[...]`: where and how the work
runs) or not (every other field: it may change what a stage computes).

    changes = config_changes(saved_tree, current_tree, type(cfg))
    refused = [c.field for c in changes if not c.placement]

A field is placement-only when it changes which actor, batch or node a row runs in, but not
the row itself (its seed, its sampling settings) nor the device, precision or threads that
compute it: every engine samples each row with its own seeded generator, and the hf engine
gives a row the same text in a batch of 1, 4, 16 or 96 (tests/engines/test_hf.py). Where that
is not so, or not shown, a field is left result-affecting and its docstring says why
(engine.cpus_per_actor, engine.gpus_per_actor, training workers, ...).
"""

from __future__ import annotations

import hashlib
import json
import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from temporal_ray.config.base import PLACEMENT, Section
from temporal_ray.config.engine import EngineConfig
from temporal_ray.config.experiment import Config
from temporal_ray.config.loading import changed_fields, with_defaults


@dataclass(frozen=True)
class ConfigChange:
    field: str
    """Dotted, as `changed_fields` names it, e.g. engine.actors or pools.future.max_actors."""
    old: Any
    new: Any
    placement: bool
    """Only where and how the work runs changed: a resume may go on."""

    def __str__(self) -> str:
        return f"{self.field} {self.old!r} -> {self.new!r}"


def _section(annotation: Any) -> type[Section] | None:
    """The section a field holds (`X` or `X | None`), or None for a plain value."""
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        found = [_section(arg) for arg in typing.get_args(annotation)]
        return next((s for s in found if s is not None), None)
    return None


def is_placement(schema: type[BaseModel], dotted: str) -> bool:
    """Whether the field `dotted` of `schema` (or a value inside it, e.g. one key of
    engine.resources) is placement-only. An unknown name is not: the safe side."""
    parts = dotted.split(".")
    if issubclass(schema, Config) and parts[0] == "pools" and len(parts) > 2:
        # pools.<role>.<field> is the role's change to engine.<field>.
        return is_placement(EngineConfig, ".".join(parts[2:]))
    model: type[BaseModel] | None = schema
    for part in parts:
        field = model.model_fields.get(part) if model is not None else None
        if field is None:
            return False
        if PLACEMENT in field.metadata:
            return True
        model = _section(field.annotation)
    return False  # a whole section appeared or went (judge.engine: None -> {...})


def placement_fields(schema: type[BaseModel], prefix: str = "") -> list[str]:
    """Every placement-only field of `schema` and its sections, dotted."""
    found = []
    for name, field in schema.model_fields.items():
        section = _section(field.annotation)
        if PLACEMENT in field.metadata:
            found.append(f"{prefix}{name}")
        elif section is not None:
            found += placement_fields(section, f"{prefix}{name}.")
    return found


def _pools_in_full(tree: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """`tree` with each role's pool changes given for every role and field that either tree
    changes, a field `tree` leaves to the engine at the engine's value: adding `pools:
    {future: {actors: 4}}` is then `pools.future.actors 1 -> 4`, not a new `pools.future`."""
    if not isinstance(tree.get("pools"), dict) or not isinstance(other.get("pools"), dict):
        return tree
    engine, pools, others = tree.get("engine") or {}, tree["pools"], other["pools"]
    full = {}
    for role in {*pools, *others}:
        mine = pools.get(role) or {}
        keys = {*mine, *(others.get(role) or {})}
        full[role] = {key: mine.get(key, engine.get(key)) for key in sorted(keys)}
    return {**tree, "pools": full}


def _value_at(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def config_changes(saved: dict[str, Any], current: dict[str, Any],
                   schema: type[Config] = Config) -> list[ConfigChange]:
    """Each field whose value differs between a run directory's saved config and the current
    one (both dumped as JSON, `current` possibly only some sections), and whether it is
    placement-only. Fields added to the schema since `saved` compare at their defaults."""
    old = with_defaults(saved, schema)
    old, new = _pools_in_full(old, current), _pools_in_full(current, old)
    return [ConfigChange(name, _value_at(old, name), _value_at(new, name),
                         is_placement(schema, name))
            for name in changed_fields(old, new)]


def results_hash(section: Section) -> str:
    """A short stable hash of the fields of `section` that may change results: a Ray Train
    run named after it keeps its name, and so its checkpoints, through a placement change."""
    data = section.model_dump(mode="json")
    for dotted in placement_fields(type(section)):
        *parents, name = dotted.split(".")
        node = data
        for part in parents:
            node = node.get(part) or {}
        node.pop(name, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
