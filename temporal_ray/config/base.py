"""What every section of the config shares: the `Section` base model, the `Method` names, and
the `Placement` marker of fields a resume may change."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    # Overrides are parsed as YAML: `storage.run_dir=2024` must still reach a str field.
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True,
                              coerce_numbers_to_str=True)


class Method(str, Enum):
    TEMPORAL = "temporal"
    SELF_REWARDING = "self_rewarding"


class _PlacementOnly:
    """The metadata `Placement[...]` puts on a field (pydantic keeps it in FieldInfo.metadata)."""

    def __repr__(self) -> str:
        return "PLACEMENT"


PLACEMENT = _PlacementOnly()
T = TypeVar("T")
Placement = Annotated[T, PLACEMENT]
"""`actors: Placement[int] = Field(1, gt=0)`: a field that decides only where and how the
work runs (pool sizes, resources, Ray settings), never what a stage computes, so a resume may
change it (config/resume.py). A field without it is taken to change results: the safe side
for a field nobody classified."""
