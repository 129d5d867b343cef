"""Models named by a Hugging Face Hub id (`org/name`, `org/name@revision`) as local directories.

A config field that names a model directory may name a Hub model instead: the driver resolves
it once, before any Ray work, to the snapshot directory in the Hub cache (downloaded there the
first time), so every worker reads the same local files and the saved config names the commit
(`.../models--org--name/snapshots/<commit>`). The cache is the hub client's own layout, so a
cache filled elsewhere with `hf download` serves here too.

A local directory or a URI stays what it is (made absolute); a name that is neither an
existing path nor an `org/name` id is returned as a path, for the model check to report.
"""

from __future__ import annotations

import os
import re

# org/name: letters, digits, '-', '_', '.'; neither part starts with '.' or '-' (the Hub's own
# rule); an optional @revision (a branch, tag or commit; a branch may hold '/').
_HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9_][\w.-]*/[A-Za-z0-9_][\w.-]*)(?:@(?P<rev>\S+))?$")
# Left out of a download: a second copy of the weights in another library's format (Meta's
# Llama repos: original/consolidated.*.pth, as large as the model), which transformers,
# DeepSpeed and vLLM never read.
SKIPPED = ["original/*"]


class HubModelError(RuntimeError):
    """A Hub model could not be had; the message says which field and what to do."""


def hub_id(path: str) -> tuple[str, str | None] | None:
    """(repo id, revision or None) when `path` names a Hub model rather than a local path or a
    URI: it is no existing path and reads as `org/name` or `org/name@revision`."""
    if "://" in path or os.path.exists(os.path.expanduser(path)):
        return None
    match = _HUB_ID.match(path)
    if not match or ".." in path or "--" in match["repo"]:
        return None
    return match["repo"], match["rev"]


def resolve_model(path: str, cache_dir: str | None = None, field: str = "model.path") -> str:
    """A local directory for the model at `path`: a URI as it is, a local path made absolute,
    a Hub id's snapshot in `cache_dir` (empty: the hub client's own cache, HF_HUB_CACHE or
    ~/.cache/huggingface/hub), downloaded there unless it is cached. With HF_HUB_OFFLINE set
    (read now: the hub client reads it once, at import) only the cache is looked at."""
    if "://" in path:
        return path
    found = hub_id(path)
    if found is None:
        return os.path.abspath(os.path.expanduser(path))
    repo, revision = found
    from huggingface_hub import snapshot_download

    cache = os.path.abspath(os.path.expanduser(cache_dir)) if cache_dir else None
    offline = _offline()
    try:
        return snapshot_download(repo, revision=revision, cache_dir=cache,
                                 local_files_only=offline, ignore_patterns=SKIPPED)
    except Exception as err:
        raise HubModelError(explain(err, field, path, cache, offline)) from err


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def explain(err: Exception, field: str, path: str, cache: str | None, offline: bool) -> str:
    """What went wrong getting `path` from the Hub, and what to do about it."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        IncompleteSnapshotError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = cache or constants.HF_HUB_CACHE
    repo, revision = hub_id(path) or (path, None)
    download = (f"`hf download {repo}{f' --revision {revision}' if revision else ''} "
                f"--cache-dir {where} --exclude '{SKIPPED[0]}'`")
    head = f"{field} {path}: no local directory of that name, and"
    if isinstance(err, GatedRepoError):
        return (f"{field} {path} is a gated model on the Hub: accept its terms on its Hub page, "
                "then set HF_TOKEN to an access token of that account")
    if isinstance(err, RepositoryNotFoundError):
        return (f"{head} the Hub has no model {repo} you may read: check the id, or, for a "
                "private model, set HF_TOKEN to an access token that can read it")
    if isinstance(err, RevisionNotFoundError):
        return f"{field} {path}: the Hub model {repo} has no revision {revision}"
    if isinstance(err, HFValidationError):
        return (f"{field} {path} is neither a local directory nor a valid Hub model id "
                f"(org/name or org/name@revision): {err}")
    if isinstance(err, IncompleteSnapshotError):
        return (f"{field} {path}: its snapshot in the Hub cache {where} is incomplete (an "
                f"interrupted download): download it again with {download}")
    if isinstance(err, LocalEntryNotFoundError) and offline:
        return (f"{head} {repo} is not in the Hub cache {where} and HF_HUB_OFFLINE is set: "
                f"download it where there is internet with {download} or unset HF_HUB_OFFLINE")
    if isinstance(err, LocalEntryNotFoundError):
        return (f"{head} {repo} could not be downloaded from the Hub nor found in the Hub "
                f"cache {where} ({err.__class__.__name__}: {str(err).splitlines()[0]}): check "
                f"the network, or download it where there is internet with {download} and "
                "set HF_HUB_OFFLINE=1 here")
    return f"{field} {path}: getting it from the Hub failed: {err.__class__.__name__}: {err}"
