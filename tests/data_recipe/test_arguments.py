"""prepare-data's options are RecipeOptions: the same defaults (method.md's), every field."""

from temporal_ray.cli import build_parser
from temporal_ray.data_recipe.arguments import recipe_options
from temporal_ray.data_recipe.split import RecipeOptions


def test_the_command_line_defaults_are_the_recipes_and_every_option_is_settable():
    parse = build_parser().parse_args
    assert recipe_options(parse(["prepare-data", "--out", "x"])) == RecipeOptions()
    args = parse(["prepare-data", "--out", "x", "--eft-size", "7", "--no-balance-scores",
                  "--languages", "en", "de", "--ift-min-rating", "4"])
    assert recipe_options(args) == RecipeOptions(eft_size=7, balance_scores=False,
                                                 languages=("en", "de"), ift_min_rating=4.0)
