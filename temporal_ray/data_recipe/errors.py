"""The one error of the data recipe: an input or an output it cannot use."""

from __future__ import annotations


class DataRecipeError(ValueError):
    """The message names the file, the row and the field (or the option) and what to do."""
