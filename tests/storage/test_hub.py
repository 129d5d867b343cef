"""A model named by its Hugging Face Hub id, read offline from a Hub cache laid out the way the
hub client writes one (the `hub_cache` fixture): resolved to its snapshot; what is not cached
stops with the command that fetches it; local paths and URIs stay paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from temporal_ray.storage.hub import HubModelError, hub_id, resolve_model

HUB_ID = "tiny-org/tiny-model"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # read at each call, not at import


def snapshot(cache: str) -> Path:
    repo = Path(cache) / "models--tiny-org--tiny-model"
    return repo / "snapshots" / (repo / "refs" / "main").read_text()


def test_a_hub_id_resolves_to_its_cached_snapshot(hub_cache, tiny_model):
    expected = snapshot(hub_cache)
    for name in (HUB_ID, f"{HUB_ID}@main", f"{HUB_ID}@{expected.name}"):
        assert resolve_model(name, hub_cache) == str(expected)
    # The snapshot's files are links into blobs/, and read as the model's own.
    config = expected / "config.json"
    assert config.is_symlink() and config.resolve().parent.name == "blobs"
    assert json.loads(config.read_text()) == json.loads(Path(tiny_model, "config.json").read_text())


def test_local_paths_and_uris_stay_paths(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_model(tiny_model) == tiny_model
    assert resolve_model("s3://bucket/model") == "s3://bucket/model"
    (tmp_path / "tiny-org" / "tiny-model").mkdir(parents=True)  # a local dir wins over an id
    assert resolve_model(HUB_ID) == str(tmp_path / HUB_ID)
    for path in ("runs/x/model", "./org/name", "m", "/no/such/dir", "org/-name"):
        assert hub_id(path) is None
        assert resolve_model(path) == str((tmp_path / path).resolve())


def test_an_id_not_in_the_cache_says_how_to_fetch_it(hub_cache):
    with pytest.raises(HubModelError) as err:
        resolve_model("other-org/missing", hub_cache, "sft.base_model")
    assert str(err.value) == (
        f"sft.base_model other-org/missing: no local directory of that name, and "
        f"other-org/missing is not in the Hub cache {hub_cache} and HF_HUB_OFFLINE is set: "
        f"download it where there is internet with `hf download other-org/missing "
        f"--cache-dir {hub_cache} --exclude 'original/*'` or unset HF_HUB_OFFLINE")
    with pytest.raises(HubModelError, match=f"--revision v2 --cache-dir {hub_cache}"):
        resolve_model(f"{HUB_ID}@v2", hub_cache)


def test_what_the_hub_answers_becomes_what_to_do(tmp_path):
    """The hub client's own errors, as it raises them for a gated, missing or private model
    and for a Hub it cannot reach (the client's response objects: nothing is sent)."""
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from temporal_ray.storage.hub import explain

    answer = httpx2.Response(401, request=httpx2.Request("GET", "https://hub.invalid/api"))
    cache = str(tmp_path)
    cases = [
        (GatedRepoError("gated", response=answer), "org/m", "accept its terms", "HF_TOKEN"),
        (RepositoryNotFoundError("404", response=answer), "org/m", "the Hub has no model org/m",
         "HF_TOKEN"),
        (RevisionNotFoundError("404", response=answer), "org/m@v9", "has no revision v9", ""),
        (LocalEntryNotFoundError("unreachable"), "org/m", "could not be downloaded",
         f"`hf download org/m --cache-dir {cache} --exclude 'original/*'` and set "
         "HF_HUB_OFFLINE=1"),
    ]
    for err, path, what, then in cases:
        message = explain(err, "judge.model", path, cache, offline=False)
        assert message.startswith(f"judge.model {path}") and what in message and then in message
