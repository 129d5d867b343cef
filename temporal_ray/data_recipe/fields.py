"""Checked access to one field of an input row; errors name the row and the field."""

from __future__ import annotations

from typing import Any

from temporal_ray.data_recipe.errors import DataRecipeError


def text(row: dict[str, Any], name: str, where: str, *, optional: bool = False) -> str | None:
    """The string field `name` (None where it is optional and null or absent)."""
    value = row.get(name)
    if value is None:
        if optional:
            return None
        raise DataRecipeError(f"{where}: missing field {name!r} (is this the right dataset?)")
    if not isinstance(value, str):
        raise DataRecipeError(f"{where}: field {name!r} must be a string, got "
                              f"{type(value).__name__}")
    return value


def flag(row: dict[str, Any], name: str, where: str) -> bool | None:
    """A true/false field that may be null or absent (None)."""
    value = row.get(name)
    if value is None or isinstance(value, bool):
        return value
    raise DataRecipeError(f"{where}: field {name!r} must be true, false or null, got {value!r}")


def normalized(prompt: str) -> str:
    """The key two prompts are duplicates under: case and runs of white space ignored."""
    return " ".join(prompt.split()).casefold()
