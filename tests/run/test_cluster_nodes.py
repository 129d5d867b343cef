"""The node counts a run records (run/cluster_nodes.py): node types read from node records
shaped as `ray.nodes()` returns them, and a timeline logged into a real MLflow file store and
read back with MLflow's own client. The live counts of an autoscaling cluster are checked by
tests/run/test_autoscaled_run.py."""

from __future__ import annotations

from temporal_ray.config import load_config
from temporal_ray.run.cluster_nodes import NodeTimeline, count_alive, node_type
from temporal_ray.storage.run_dir import RunDir
from temporal_ray.tracking import Tracker
from temporal_ray.tracking.mlflow_store import FILE_STORE


def node(alive: bool = True, labels: dict | None = None, **resources: float) -> dict:
    return {"NodeID": "n", "Alive": alive, "Labels": labels or {},
            "Resources": {"CPU": 2.0, "memory": 1e9, "object_store_memory": 1e8,
                          "node:10.0.0.1": 1.0, **resources}}


HEAD = node(**{"node:__internal_head__": 1.0})
KUBERAY_GENERATION = node({"ray.io/node-group": "gpu-generation"}, GPU=8, **{
    "gpu-generation": 8, "accelerator_type:H100": 1})


def test_node_types():
    assert node_type(HEAD) == "head"
    assert node_type(node(labels={"ray.io/node-group": "headgroup"},
                          **{"node:__internal_head__": 1.0})) == "headgroup"
    assert node_type(KUBERAY_GENERATION) == "gpu-generation"
    assert node_type(node(training_node=2)) == "training_node"   # a hand-started node's type
    assert node_type(node(GPU=1)) == "worker"


def test_count_alive_leaves_out_dead_nodes():
    nodes = [HEAD, KUBERAY_GENERATION, KUBERAY_GENERATION,
             node(False, {"ray.io/node-group": "gpu-training"})]
    assert count_alive(nodes) == {"gpu-generation": 2, "head": 1}
    assert list(count_alive([KUBERAY_GENERATION, HEAD])) == ["gpu-generation", "head"]


def test_timeline_in_the_summary_and_the_tracker(tmp_path):
    from mlflow import MlflowClient

    run = RunDir(str(tmp_path / "run"))
    cfg = load_config(None, ["model.path=/m0", "data.prompts=/p.jsonl",
                             f"storage.run_dir={tmp_path / 'run'}"])
    tracker = Tracker.open(cfg, run, "temporal")
    nodes = NodeTimeline(tracker)
    nodes.record("start", {"head": 1})
    nodes.record("iter_0/candidates_present", {"gpu-generation": 2, "head": 1})
    nodes.record("iter_0/model", {"gpu-training": 1, "head": 1})
    tracker.finish()
    assert [(s["moment"], s["nodes"]) for s in nodes.samples][1:] == [
        ("iter_0/candidates_present", {"gpu-generation": 2, "head": 1}),
        ("iter_0/model", {"gpu-generation": 0, "gpu-training": 1, "head": 1})]
    assert all(isinstance(s["seconds"], float) for s in nodes.samples)

    client = MlflowClient(tracking_uri=f"file://{run.path(FILE_STORE)}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "run"]
    (root,) = client.search_runs([experiment.experiment_id])

    def curve(name: str) -> list[tuple[int, float]]:
        return [(p.step, p.value) for p in client.get_metric_history(root.info.run_id, name)]
    assert curve("nodes/total") == [(0, 1.0), (1, 3.0), (2, 2.0)]
    assert curve("nodes/gpu-generation") == [(1, 2.0), (2, 0.0)]   # gone: comes down
    assert curve("nodes/gpu-training") == [(2, 1.0)]
