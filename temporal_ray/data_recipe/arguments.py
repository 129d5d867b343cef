"""The options of `temporal-ray prepare-data`, made from `RecipeOptions` so that the command
line and the recipe's defaults (method.md's values) are one list."""

from __future__ import annotations

import argparse
from dataclasses import fields

from temporal_ray.data_recipe.split import OPTION_HELP, RecipeOptions


def add_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--oasst", nargs="+", default=[], metavar="PATH",
                         help="Open Assistant oasst1/oasst2 message files or directories "
                              "(Parquet or JSONL, as the Hub ships them)")
    command.add_argument("--ultrafeedback", nargs="+", default=[], metavar="PATH",
                         help="openbmb/UltraFeedback files or directories")
    command.add_argument("--out", required=True, help="the directory to write")
    command.add_argument("--judge-template", metavar="FILE", help="EFT prompts with this "
                         "template (judge.prompt_template) instead of the built-in rubric")
    command.add_argument("--force", action="store_true",
                         help="replace an output made from other inputs or options")
    for option in fields(RecipeOptions):
        default = option.default
        flag = "--" + option.name.replace("_", "-")
        shown = " ".join(default) if isinstance(default, tuple) else default
        help_text = f"{OPTION_HELP[option.name]} (default {shown})"
        if isinstance(default, bool):
            command.add_argument(flag, action=argparse.BooleanOptionalAction,
                                 default=default, help=help_text)
        elif isinstance(default, tuple):
            command.add_argument(flag, nargs="+", default=list(default), help=help_text)
        else:
            command.add_argument(flag, type=type(default), default=default, help=help_text)


def recipe_options(args: argparse.Namespace) -> RecipeOptions:
    values = {option.name: getattr(args, option.name) for option in fields(RecipeOptions)}
    return RecipeOptions(**{**values, "languages": tuple(values["languages"])})
