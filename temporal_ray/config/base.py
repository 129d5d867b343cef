"""What every section of the config shares: the `Section` base model, and the `Method` names."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    # Overrides are parsed as YAML: `storage.run_dir=2024` must still reach a str field.
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True,
                              coerce_numbers_to_str=True)


class Method(str, Enum):
    TEMPORAL = "temporal"
    SELF_REWARDING = "self_rewarding"
