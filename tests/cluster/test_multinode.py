"""A multi-node Ray cluster on this machine (`ray.cluster_utils.Cluster`): a head with no
stage resources, two generation nodes and one training node, told apart by custom resources
that stand in for node types (on a real cluster: GPU node groups).

- Placement: generation actors land on generation nodes, Ray Train workers on the training
  node, and nothing of either on the head.
- Fault: a generation node is removed while the generate stage runs on it; the stage completes
  with every (prompt, sample) exactly once and the same texts as the engine gives for the same
  requests undisturbed (called directly: each row samples with its own seed).
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from temporal_ray.config import DPOConfig, EngineConfig, GenerationConfig
from temporal_ray.engines.pool import EnginePool
from temporal_ray.inputs.load import load_prompts
from temporal_ray.stages.dpo import train_dpo
from temporal_ray.stages.generate import generate_candidates
from temporal_ray.storage.files import read_rows, write_rows

pytestmark = [pytest.mark.slow]

PROMPTS_FILE = os.path.join(os.path.dirname(__file__), "..", "..", "temporal_ray", "assets",
                            "tiny_prompts.jsonl")
GENERATION_NODE, TRAINING_NODE = "generation_node", "training_node"
RAY_ENV = {"env_vars": {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}}


@pytest.fixture
def cluster():
    """Head (1 CPU, dashboard for the state API), 2 generation nodes, 1 training node."""
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()  # leave the single-node test cluster; the next test that needs it restarts it
    # A removed node is declared dead after 2 missed 1 s health checks (default: 5 x 3 s).
    nodes = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": True,
        "_system_config": {"health_check_period_ms": 1000,
                           "health_check_failure_threshold": 2}})
    for _ in range(2):
        nodes.add_node(num_cpus=2, resources={GENERATION_NODE: 2})
    nodes.add_node(num_cpus=2, resources={TRAINING_NODE: 2})
    nodes.wait_for_nodes()
    ray.init(address=nodes.address, runtime_env=RAY_ENV)
    yield nodes
    ray.shutdown()
    nodes.shutdown()


def node_types() -> dict[str, str]:
    """node id -> head | generation_node | training_node, for the nodes alive now."""
    import ray

    kinds = {}
    for node in ray.nodes():
        if not node["Alive"]:
            continue
        resources = node["Resources"]
        kinds[node["NodeID"]] = next(
            (kind for kind in (GENERATION_NODE, TRAINING_NODE) if kind in resources), "head")
    return kinds


def actors_of(class_fragment: str, state: str | None = None) -> list:
    from ray.util.state import list_actors

    filters = [("state", "=", state)] if state else []
    return [a for a in list_actors(filters=filters, detail=True, limit=10_000)
            if class_fragment in a.class_name]


def write_prompts(tmp_path, count: int) -> str:
    write_rows(load_prompts(PROMPTS_FILE).rows[:count], str(tmp_path / "prompts" / "p.parquet"))
    return str(tmp_path / "prompts")


def candidates(path) -> dict[tuple[str, int], str]:
    rows = read_rows(str(path))
    keys = [(r["prompt_id"], r["sample_index"]) for r in rows]
    assert len(keys) == len(set(keys)), "a (prompt, sample) was written twice"
    return {(r["prompt_id"], r["sample_index"]): r["response"] for r in rows}


@pytest.mark.chaos
def test_node_types_and_a_removed_generation_node(cluster, tiny_model, tmp_path, chaos_record,
                                                  engine_texts):
    kinds = node_types()
    prompts = write_prompts(tmp_path, 16)
    # Enough work that the stage is still running seconds after its engines start, even on
    # a fast machine: 64 rows of 96 tokens, 8 batches per engine.
    generation = GenerationConfig(samples=4, max_new_tokens=96, temperature=1.0, seed=3)
    engine = EngineConfig(actors=2, batch_size=4, resources={GENERATION_NODE: 1})

    def generate(out: str) -> None:
        generate_candidates(prompts, {"present": tiny_model}, generation, EnginePool(engine),
                            str(tmp_path / out))

    # Placement: trainer workers on the training node, engines (below) on generation nodes,
    # none on the head.
    pairs = [{"prompt": f"What is {i} plus {i}?", "chosen": f"It is {2 * i}.",
              "rejected": "I like trains."} for i in range(4)]
    write_rows(pairs, str(tmp_path / "pairs.parquet"))
    dpo = DPOConfig(lr=1e-3, warmup_ratio=0.0, batch_size=4, micro_batch_size=1, max_length=64,
                    checkpoint_every=0, resources_per_worker={TRAINING_NODE: 1})
    metrics = train_dpo(str(tmp_path / "pairs.parquet"), tiny_model, str(tmp_path / "model"),
                        dpo, storage_path=str(tmp_path / "ray_train"), name="placement")
    assert metrics["optimizer_steps"] == 1
    workers = actors_of("RayTrainWorker")
    assert len(workers) >= 2
    assert {kinds[a.node_id] for a in workers} == {TRAINING_NODE}

    # Fault: the node of a busy engine actor is removed mid-stage.
    seen: set[str] = set()
    removed: list[float] = []
    stop = threading.Event()

    def remove_a_busy_generation_node() -> None:
        while not stop.is_set():
            alive = [a for a in actors_of("HFEngine", "ALIVE") if a.actor_id not in seen]
            if alive:
                # Soon after its actor starts (the actor has loaded the model and takes
                # batches): the stage is under way but cannot be done yet, even when the
                # state API answers slowly on a loaded machine.
                time.sleep(0.5)
                victim = next(n for n in cluster.worker_nodes
                              if n.node_id == alive[0].node_id)
                cluster.remove_node(victim)
                removed.append(time.time())
                return
            time.sleep(0.2)

    remover = threading.Thread(target=remove_a_busy_generation_node)
    remover.start()
    try:
        generate("faulted")
        finished = time.time()
    finally:
        stop.set()
        remover.join()

    assert removed, "no generation node was found running an engine actor"
    assert removed[0] < finished - 1.0, "the node was removed after the stage had finished"
    engines = actors_of("HFEngine")  # those of the removed node too
    assert len(engines) >= 2
    assert {kinds[a.node_id] for a in engines} == {GENERATION_NODE}
    clean = engine_texts(tiny_model, read_rows(prompts), "present", generation)
    faulted = candidates(tmp_path / "faulted")
    assert len(clean) == 16 * 4
    chaos_record("generation node removed mid-stage", len(removed), faulted == clean,
                 len(set(clean) - set(faulted)))
    assert faulted == clean
