"""The recipe's output directory, written whole or not at all, and what it was made from.

`publish(out, files, manifest)` writes every file into a temporary directory beside `out`,
then renames it into place: a crash leaves no half output (only a `.tmp-` directory, removed
at the next start). `fingerprint(paths)` sizes and hashes the input files, so a rerun can tell
whether `out` already holds what the same inputs and options would make.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from pyarrow import fs as pafs

from temporal_ray.data_recipe.errors import DataRecipeError
from temporal_ray.data_recipe.sources import input_files
from temporal_ray.storage.integrity import sha256_of

MANIFEST = "manifest.json"


def fingerprint(paths: list[str]) -> list[dict[str, Any]]:
    """[{path, files: [{name, bytes, sha256}]}] for each input, in the order given."""
    described, local = [], pafs.LocalFileSystem()
    for path in paths:
        root = Path(path)
        files = [{"name": str(f.relative_to(root)) if f != root else f.name,
                  "bytes": f.stat().st_size, "sha256": sha256_of(local, str(f))}
                 for f in input_files(root)]
        described.append({"path": str(path), "files": files})
    return described


def read_manifest(out: str | Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(out) / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise DataRecipeError(f"{Path(out) / MANIFEST} cannot be read ({err}): remove "
                              f"{out} or pass --force") from None


def jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def publish(out: str | Path, files: dict[str, str], manifest: dict[str, Any],
            replace: bool = False) -> Path:
    """Write `files` (name -> text) and the manifest as the directory `out`, atomically."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.tmp-*"):  # a crashed run's
        shutil.rmtree(stale, ignore_errors=True)
    if out.exists() and not replace:
        raise DataRecipeError(f"{out} exists: pass --force to replace it")
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        for name, text in {**files, MANIFEST: json.dumps(manifest, indent=2) + "\n"}.items():
            (tmp / name).write_text(text, encoding="utf-8")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():  # --force: the old output goes only once the new one is in place
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        out.rename(old)
    try:
        tmp.rename(out)
    except BaseException:
        if old is not None:
            old.rename(out)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out
