"""`temporal-ray prepare-data`: read the datasets, choose the rows, publish the directory.

In:  Open Assistant and UltraFeedback files or directories in their published formats.
Out: OUT/ift.jsonl, OUT/eft.jsonl (rows {prompt, response, ...}, what sft.data reads),
     OUT/prompts.jsonl (every iteration's prompts in iteration order, what data.prompts reads:
     data.prompts_per_iteration cuts the same chunks) and OUT/prompts-iter<i>.jsonl, with
     OUT/manifest.json: the inputs (sizes, sha256), the options, the counts and the drops.
A rerun with the same input files and options finds the manifest and does nothing (inputs
that are not local files are read again); other inputs or options need --force (the new
directory then replaces the old one whole).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from temporal_ray import terminal
from temporal_ray.data_recipe.errors import DataRecipeError
from temporal_ray.data_recipe.oasst import first_turn_pairs
from temporal_ray.data_recipe.publish import fingerprint, jsonl, publish, read_manifest
from temporal_ray.data_recipe.sources import read_input
from temporal_ray.data_recipe.split import RecipeOptions, RecipeRows, split_rows
from temporal_ray.data_recipe.ultrafeedback import Item, read_item

logger = logging.getLogger(__name__)

RECIPE_VERSION = 1
"""Raise when a change makes the same inputs and options give other rows."""


def _rows(paths: list[str], label: str, option: str
          ) -> Iterator[tuple[str, dict[str, Any]]]:
    with terminal.Progress(f"reading {label}", unit="rows") as progress:
        for path in paths:
            for n, record in enumerate(read_input(path, label, option), start=1):
                yield record
                if n % 1000 == 0:
                    progress.update(1000)
    logger.info("read %s: %s", label, ", ".join(paths))


def _items(paths: list[str], dropped: Counter[str]) -> Iterable[Item]:
    for where, row in _rows(paths, "UltraFeedback", "--ultrafeedback"):
        yield read_item(where, row, dropped)


def _key(oasst: list[str], ultrafeedback: list[str], options: RecipeOptions,
         template: str) -> dict[str, Any]:
    """What the output depends on; JSON-shaped, so it compares equal to a manifest's."""
    key = {"recipe_version": RECIPE_VERSION, "options": asdict(options),
           "judge_template_sha256": hashlib.sha256(template.encode("utf-8")).hexdigest(),
           "inputs": {"oasst": fingerprint(oasst), "ultrafeedback": fingerprint(ultrafeedback)}}
    return json.loads(json.dumps(key))


def _files(rows: RecipeRows, options: RecipeOptions) -> dict[str, str]:
    files = {"ift.jsonl": jsonl(rows.ift), "eft.jsonl": jsonl(rows.eft),
             "prompts.jsonl": jsonl(rows.prompts)}
    for i in range(options.iterations):
        files[f"prompts-iter{i}.jsonl"] = jsonl([r for r in rows.prompts if r["iteration"] == i])
    return files


def prepare_data(oasst: list[str], ultrafeedback: list[str], out: str,
                 options: RecipeOptions, template: str, force: bool = False) -> dict[str, Any]:
    """Build and publish the recipe's directory; its manifest (the existing one on a no-op)."""
    if not oasst and not ultrafeedback:
        raise DataRecipeError("no inputs: give --oasst and --ultrafeedback")
    if not ultrafeedback:
        raise DataRecipeError("--ultrafeedback is needed: it gives the EFT items and the "
                              "iterations' prompts")
    key = _key(oasst, ultrafeedback, options, template)
    existing = read_manifest(out)
    same = existing is not None and {k: existing.get(k) for k in key} == key
    # Files are hashed; a Hub dataset's name says nothing of its version: rebuild it.
    local = all(Path(p).exists() for p in [*oasst, *ultrafeedback])
    if same and local and not force:
        logger.info("%s already holds this recipe's output for these inputs and options: "
                    "nothing to do", out)
        return existing
    if Path(out).exists() and not (force or same):
        raise DataRecipeError(f"{out} holds other data (other inputs, options or recipe "
                              "version): pass --force to replace it, or give another --out")
    dropped: Counter[str] = Counter()
    pairs, oasst_dropped = first_turn_pairs(_rows(oasst, "Open Assistant", "--oasst"),
                                            options.languages)
    dropped.update({f"oasst.{k}": v for k, v in oasst_dropped.items()})
    uf_dropped: Counter[str] = Counter()
    rows = split_rows(pairs, list(_items(ultrafeedback, uf_dropped)), options, template)
    dropped.update({f"ultrafeedback.{k}": v for k, v in uf_dropped.items()})
    dropped.update(rows.dropped)
    for shortfall in rows.shortfalls:
        logger.warning(shortfall)
    files = _files(rows, options)
    manifest = {**key, "counts": rows.counts, "dropped": dict(sorted(dropped.items())),
                "shortfalls": rows.shortfalls,
                "files": {name: {"rows": text.count("\n"),
                                 "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
                          for name, text in files.items()}}
    publish(out, files, manifest, replace=force or same)
    return manifest
