"""The node types of the shipped clusters against what the recipes ask for, as Ray's
autoscaler reads them: a pool or trainer that asks for a custom resource no node type offers
(or not enough of it) waits forever, with nothing on screen but pending actors.

- KubeRay: the RayJob's cluster spec through KubeRay's translation into autoscaler node types
  (the code the in-tree autoscaler runs on the RayCluster), against the recipe the job runs.
- `ray up`: the AWS launcher's node types against every GPU recipe.
(tests/cluster/test_manifests.py checks the manifests' schemas and shapes.)
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from temporal_ray.config import Config, load_config

ROOT = Path(__file__).resolve().parents[2]
RAYJOBS = sorted((ROOT / "cluster" / "kuberay").glob("rayjob-*.yaml"))
LAUNCHER = ROOT / "cluster" / "cluster-launcher" / "aws-gpu.yaml"
GPU_CONFIGS = sorted((ROOT / "configs").glob("llama-3.1-*.yaml"))


def read_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def autoscaler_node_types(cluster: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The node types Ray's autoscaler derives from a RayCluster spec: name -> resources,
    min_workers, max_workers (the head is `headgroup`)."""
    from ray.autoscaler._private.kuberay.autoscaling_config import (
        _derive_autoscaling_config_from_ray_cr,
    )

    cr = {"metadata": {"name": "cluster", "namespace": "default"}, "spec": cluster}
    return _derive_autoscaling_config_from_ray_cr(cr)["available_node_types"]


def recipe_demands(cfg: Config) -> list[tuple[str, dict[str, float], int]]:
    """(section, custom resources per unit, units at most) of the recipe's pools and workers:
    an engine takes one unit per GPU bundle (tensor x pipeline), a trainer one per worker."""
    engine = cfg.engine
    per_engine = engine.tensor_parallel_size * engine.pipeline_parallel_size
    return [("engine.resources", engine.resources,
             (engine.max_actors or engine.actors) * per_engine),
            ("dpo.resources_per_worker", cfg.dpo.resources_per_worker, cfg.dpo.workers),
            ("sft.resources_per_worker", cfg.sft.resources_per_worker, cfg.sft.workers)]


@pytest.mark.parametrize("path", RAYJOBS, ids=[p.name for p in RAYJOBS])
def test_kuberay_node_types_offer_what_the_recipe_asks_for(path):
    manifest = read_yaml(path)
    argv = shlex.split(manifest["spec"]["entrypoint"])
    cfg = load_config(ROOT / argv[argv.index("--config") + 1])
    types = autoscaler_node_types(manifest["spec"]["rayClusterSpec"])
    assert types["headgroup"]["resources"]["CPU"] == 0   # no pool or trainer on the head
    for section, resources, units in recipe_demands(cfg):
        for name, amount in resources.items():
            offering = [t for t in types.values() if t["resources"].get(name)]
            assert offering, f"{path.name}: {section} asks for {name}: no worker group has it"
            assert all(t["resources"].get("GPU") and t["min_workers"] == 0 for t in offering)
            assert units * amount <= sum(t["max_workers"] * t["resources"][name]
                                         for t in offering), (section, name)


def test_kuberay_8b_generation_and_training_scale_apart():
    """The 8B cluster: generation and DPO ask for different node groups, so the generation
    nodes can go while DPO trains; its generation pool may grow onto a second node."""
    types = autoscaler_node_types(read_yaml(ROOT / "cluster" / "kuberay" /
                                            "raycluster-8b.yaml")["spec"])
    cfg = load_config(ROOT / "configs" / "llama-3.1-8b.yaml")
    (generation,) = cfg.engine.resources
    (training,) = cfg.dpo.resources_per_worker
    assert generation != training and set(types) >= {generation, training}
    per_node = types[generation]["resources"][generation] / cfg.engine.resources[generation]
    assert cfg.engine.max_actors > per_node and types[generation]["max_workers"] >= 2
    assert cfg.sft.resources_per_worker == cfg.dpo.resources_per_worker


def test_launcher_node_types_offer_what_the_recipes_ask_for():
    cfg = read_yaml(LAUNCHER)
    head = cfg["head_node_type"]
    workers = {n: t for n, t in cfg["available_node_types"].items() if n != head}
    for path in GPU_CONFIGS:
        for section, resources, units in recipe_demands(load_config(path)):
            for name, amount in resources.items():
                offered = sum(t["max_workers"] * t["resources"].get(name, 0)
                              for t in workers.values())
                assert units * amount <= offered, (path.name, section, name)
