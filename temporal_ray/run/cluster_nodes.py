"""The cluster's nodes over a run: how many of each node type are alive, sampled when the run
starts and when each stage ends, for the run summary and the tracker. On an autoscaling
cluster nodes come for a stage's pools or workers and go once idle; this is the record of it.

A node's type is the node group Ray labels it with (`ray.io/node-group`: KubeRay's worker
group, the autoscaler's node type), else `head` for the head, else its first custom resource
(a cluster started by hand, whose nodes carry a resource that stands for their type), else
`worker`. It knows nothing of stages: the caller names the moment of each sample.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Protocol

NODE_GROUP_LABEL = "ray.io/node-group"
HEAD, WORKER = "head", "worker"
# Resources every node has (or Ray adds per node): never a node type.
STANDARD = {"CPU", "GPU", "TPU", "memory", "object_store_memory"}
HEAD_RESOURCE = "node:__internal_head__"
"""The resource Ray gives the head node alone (`ray.nodes()` has no head flag)."""


class MetricsSink(Protocol):
    """What a timeline logs into (tracking.Tracker)."""

    def log_metrics(self, prefix: str, values: dict[str, Any], step: int) -> None: ...


def node_type(node: dict[str, Any]) -> str:
    """The type of one node as `ray.nodes()` describes it."""
    group = (node.get("Labels") or {}).get(NODE_GROUP_LABEL)
    if group:
        return group
    resources = node.get("Resources") or {}
    if HEAD_RESOURCE in resources:
        return HEAD
    custom = sorted(name for name in resources
                    if name not in STANDARD and not name.startswith(("node:", "accelerator_type:")))
    return custom[0] if custom else WORKER


def count_alive(nodes: list[dict[str, Any]]) -> dict[str, int]:
    """Alive nodes by type, types in name order."""
    counts = Counter(node_type(n) for n in nodes if n.get("Alive"))
    return dict(sorted(counts.items()))


class NodeTimeline:
    """Alive nodes by type at named moments of one driver's run (a resumed run starts a new
    timeline): each sample is kept for the summary and logged as metrics `nodes/<type>` and
    `nodes/total`, the sample's number as the step (the backends keep each point's time). A
    type seen earlier and gone now counts 0, so its curve comes down."""

    def __init__(self, tracker: MetricsSink | None = None):
        self.started = time.time()
        self.tracker = tracker
        self.samples: list[dict[str, Any]] = []
        self.types: set[str] = set()

    def sample(self, moment: str) -> None:
        """Record the nodes alive now; nothing when this process is not connected to Ray."""
        import ray

        if not ray.is_initialized():
            return
        self.record(moment, count_alive(ray.nodes()))

    def record(self, moment: str, alive: dict[str, int]) -> None:
        self.types |= set(alive)
        counts = {kind: alive.get(kind, 0) for kind in sorted(self.types)}
        self.samples.append({"seconds": round(time.time() - self.started, 1),
                             "moment": moment, "nodes": counts})
        if self.tracker is not None:
            self.tracker.log_metrics("nodes", {**counts, "total": sum(counts.values())},
                                     step=len(self.samples) - 1)
