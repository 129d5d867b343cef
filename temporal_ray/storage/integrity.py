"""Integrity of finished stages: each data file's size and SHA-256, recorded when a stage is
published and checked when a rerun reuses it.

Files are read through the pyarrow filesystem in chunks, so this works on any filesystem a run
directory is on (local, a mounted volume, s3://, gs://) and holds one chunk in memory. Hashing
costs about 1.5 s a GB on a busy core here (0.6 to 0.8 GB/s; see the README): once at publish,
and on each reuse unless `TEMPORAL_RAY_VERIFY=size` asks for sizes only.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

from pyarrow import fs as pafs

CHUNK = 8 << 20
"""Bytes read at a time (8 MiB: smaller chunks hash noticeably slower through pyarrow)."""
VERIFY_ENV = "TEMPORAL_RAY_VERIFY"
VERIFY_MODES = ("sha256", "size")
"""sha256: sizes and checksums (the default); size: sizes only, no file read (a rerun that
reuses many large checkpoints on an object store)."""


@dataclass(frozen=True)
class Damage:
    """What is wrong with one file of a finished stage."""

    file: str
    """Relative to the stage's directory, as the manifest names it."""
    what: str


def verify_mode() -> str:
    """How reused stages are checked: `TEMPORAL_RAY_VERIFY`, sha256 when unset."""
    mode = os.environ.get(VERIFY_ENV, "sha256")
    if mode not in VERIFY_MODES:
        raise ValueError(f"{VERIFY_ENV}={mode!r}: give one of {', '.join(VERIFY_MODES)}")
    return mode


def sha256_of(fs: pafs.FileSystem, path: str) -> str:
    digest = hashlib.sha256()
    # compression=None: the file's own bytes, even where its name ends in .gz.
    with fs.open_input_stream(path, compression=None) as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def list_files(fs: pafs.FileSystem, root: str) -> dict[str, pafs.FileInfo]:
    """Every file under `root` (recursively) by its path relative to `root`."""
    selector = pafs.FileSelector(root, recursive=True, allow_not_found=True)
    return {info.path[len(root) + 1:]: info for info in fs.get_file_info(selector)
            if info.type == pafs.FileType.File}


def record_files(fs: pafs.FileSystem, root: str, skip: tuple[str, ...] = ()
                 ) -> dict[str, dict[str, Any]]:
    """{relative path: {"size": bytes, "sha256": hex}} of every file under `root` but `skip`."""
    return {relative: {"size": info.size, "sha256": sha256_of(fs, info.path)}
            for relative, info in sorted(list_files(fs, root).items()) if relative not in skip}


def check_files(fs: pafs.FileSystem, root: str, files: dict[str, dict[str, Any]],
                mode: str = "sha256") -> Damage | None:
    """The first file under `root` that is not as `files` (a manifest's record) says: missing,
    of another size or, with mode sha256, of other content; None when all hold. Files the
    record does not name are ignored (a stage nested inside this one, a user's notes)."""
    found = list_files(fs, root)
    # Sizes first, for every file: one listing, so a truncated or missing file is named
    # before any file is read.
    for relative, expected in sorted(files.items()):
        info = found.get(relative)
        if info is None:
            return Damage(relative, "is missing")
        if info.size != expected["size"]:
            return Damage(relative, f"has {info.size} bytes, the manifest says "
                                    f"{expected['size']} (truncated or rewritten)")
    if mode == "sha256":
        for relative, expected in sorted(files.items()):
            if sha256_of(fs, found[relative].path) != expected["sha256"]:
                return Damage(relative, "has the recorded size but another SHA-256 "
                                        "(changed in place)")
    return None
