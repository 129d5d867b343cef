"""What the tests driving real `temporal-ray run` processes share: the short tiny run (its
prompts come as a Parquet file of chat messages, half of them with a system prompt), and a
local autoscaling cluster with the shipped KubeRay cluster's node types in miniature."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from temporal_ray.run.cluster_nodes import STANDARD
from temporal_ray.run.session import LOCAL_TRAIN_ENV

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "tiny.yaml"
PROMPTS, SAMPLES = 4, 2
SYSTEM = "Answer in one short sentence."


def write_chat_prompts(path: Path, jsonl: Path) -> Path:
    """The JSONL prompt file's rows as a Parquet file of chat `messages`: every other prompt
    opens with SYSTEM."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for index, line in enumerate(jsonl.read_text().splitlines()):
        row = json.loads(line)
        system = [{"role": "system", "content": SYSTEM}] if index % 2 == 0 else []
        rows.append({"prompt_id": row["prompt_id"],
                     "messages": [*system, {"role": "user", "content": row["prompt"]}]})
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_short_run_config(tmp_path: Path, model: str, run_dir: Path,
                           dpo: dict[str, Any] | None = None) -> Path:
    """configs/tiny.yaml shortened: one Self-Rewarding iteration (the shorter loop, the same
    stages) of PROMPTS prompts x SAMPLES samples on `model`, in `run_dir`; `dpo` overrides
    fields of its DPO section. Returns the config file's path."""
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["model"]["path"] = model
    cfg["data"]["prompts"] = str(write_chat_prompts(tmp_path / "prompts.parquet",
                                                    CONFIG.parents[1] / cfg["data"]["prompts"]))
    cfg["data"]["prompts_per_iteration"] = PROMPTS
    cfg["method"].update(name="self_rewarding", iterations=1)
    cfg["generation"].update(samples=SAMPLES, max_new_tokens=8)
    cfg["dpo"].update(batch_size=4, micro_batch_size=2, epochs=1, **(dpo or {}))
    cfg["engine"].update(actors=1, batch_size=8)
    cfg["storage"]["run_dir"] = str(run_dir)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def short_run_config() -> Callable[..., Path]:
    """write_short_run_config, for a test to call."""
    return write_short_run_config


# ------------------------------------------------------------- An autoscaling cluster
# Ray's fake multi-node provider (the one `ray.cluster_utils.AutoscalingCluster` drives), whose
# "nodes" are raylets the autoscaler starts and stops on this machine, with the node types of
# the shipped KubeRay RayCluster in miniature. `AutoscalingCluster.start` begins with
# `ray stop --force`, which ends every Ray process on the machine (the test session's own
# cluster included), and uses the default ports and temp dir. This one is started as it does
# it, without that: `ray start --head --block` as a child in a session of its own, with its own
# ports, temp dir and auth token; stopping it ends that process group (the autoscaler's
# raylets are in it), then any process left that runs in its temp dir, by pid.

RAY = Path(sys.executable).with_name("ray")
MANIFEST = ROOT / "cluster" / "kuberay" / "raycluster-8b.yaml"
HEAD_TYPE = "ray.head.default"   # the fake provider's name for the head's type

# The shipped worker groups in miniature: the same names and custom resources, min 0, fewer
# CPUs, GPUs and units of each custom resource (as many GPUs as units, as shipped: one per
# engine or trainer; Ray's GPUs are logical, and nothing here asks for one), a small max. A
# generation node holds one engine (one unit), so a pool of max_actors 2 needs a second node.
# Its CPUs (logical: Ray only counts them) are many so that Ray Data's budget for the pool,
# which counts CPUs, GPUs and memory but not custom resources, lets it add that engine, which
# then waits for the node (on the shipped cluster the budget grows as Ray Data's own cluster
# autoscaling asks for GPUs). A training node holds both workers. The GPUs also
# keep the autoscaler from adding a GPU group's node for CPU-only work (Ray Data tasks) while
# a CPU node can take it, as on the shipped cluster.
MINIATURE = {"gpu-generation": {"CPU": 16, "units": 1, "max": 2},
             "gpu-training": {"CPU": 2, "units": 2, "max": 1},
             "cpu": {"CPU": 1, "units": 1, "max": 1}}
IDLE_TIMEOUT_S = 5.0
NODE_OBJECT_STORE = 150 * 1024 * 1024


def kuberay_node_types(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The node types Ray's in-tree autoscaler derives from the RayCluster (KubeRay's own
    translation), head as `headgroup`."""
    from ray.autoscaler._private.kuberay.autoscaling_config import (
        _derive_autoscaling_config_from_ray_cr,
    )

    cr = {"metadata": {"name": manifest["metadata"]["name"], "namespace": "default"},
          "spec": manifest["spec"]}
    return _derive_autoscaling_config_from_ray_cr(cr)["available_node_types"]


def miniature_config(manifest: dict[str, Any], gcs_address: str) -> dict[str, Any]:
    """The autoscaling config of the fake provider for `manifest`'s cluster in miniature."""
    shipped = kuberay_node_types(manifest)
    head = shipped.pop("headgroup")
    assert set(shipped) == set(MINIATURE), f"{MANIFEST.name}'s worker groups changed"
    types = {HEAD_TYPE: {"resources": {"CPU": head["resources"]["CPU"]}, "node_config": {},
                         "max_workers": 0}}
    for name, node in shipped.items():
        small = MINIATURE[name]
        custom = {k: small["units"] for k in node["resources"] if k not in STANDARD}
        gpus = {"GPU": small["units"]} if node["resources"].get("GPU") else {}
        types[name] = {"resources": {"CPU": small["CPU"], **gpus, **custom,
                                     "object_store_memory": NODE_OBJECT_STORE},
                       "node_config": {}, "min_workers": node["min_workers"],
                       "max_workers": min(node["max_workers"], small["max"])}
    return {
        "cluster_name": "miniature", "max_workers": sum(MINIATURE[n]["max"] for n in shipped),
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True,
                     "disable_node_updaters": True, "disable_launch_config_check": True,
                     "gcs_address": gcs_address},
        "available_node_types": types, "head_node_type": HEAD_TYPE,
        "idle_timeout_minutes": IDLE_TIMEOUT_S / 60, "upscaling_speed": 1.0,
        "auth": {}, "docker": {}, "file_mounts": {}, "cluster_synced_files": [],
        "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
        **{key: [] for key in ("initialization_commands", "setup_commands",
                               "head_setup_commands", "worker_setup_commands",
                               "head_start_ray_commands", "worker_start_ray_commands")}}


@dataclass
class AutoscalingCluster:
    gcs_address: str
    dashboard: str
    env: dict[str, str]
    """For a driver or CLI of this cluster: its auth token, RAY_ADDRESS set."""
    temp_dir: str
    idle_timeout_s: float = IDLE_TIMEOUT_S

    def records(self) -> dict[str, list[dict[str, Any]]]:
        """The cluster's own records, through its state API (in a process of its own, which
        holds the cluster's token): nodes (dead ones too, with start and end times), actors
        and the autoscaler's events (None if they cannot be read)."""
        out = subprocess.run([sys.executable, "-c", RECORDS, self.dashboard], env=self.env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout)


@pytest.fixture
def autoscaling_cluster(free_ports) -> Iterator[AutoscalingCluster]:
    """A local autoscaling cluster (see "An autoscaling cluster" above), stopped after."""
    import ray._private.services

    gcs, dashboard, client, node_manager, object_manager, agent_listen, agent_grpc, \
        metrics, runtime_env_agent = free_ports(9)
    temp_dir = tempfile.mkdtemp(prefix="ra", dir="/tmp")  # short: Unix socket paths are capped
    gcs_address = f"{ray._private.services.get_node_ip_address()}:{gcs}"
    config = Path(temp_dir) / "autoscaling.json"
    config.write_text(json.dumps(miniature_config(yaml.safe_load(MANIFEST.read_text()),
                                                  gcs_address)))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **LOCAL_TRAIN_ENV}
    env.pop("RAY_ADDRESS", None)
    # What AutoscalingCluster.start sets for the head; the autoscaler's raylets inherit it, and
    # so every worker. Autoscaler v1, AutoscalingCluster's default: v2 (which KubeRay runs)
    # reads the config through defaults that Ray 2.60's wheel lacks for the fake provider
    # (fake_multi_node/example.yaml), and its monitor exits. The node types, the idle timeout
    # and the scaling on demand are the same config for both.
    head_env = {**env, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1",
                "RAY_enable_autoscaler_v2": "0"}
    head = subprocess.Popen(
        [str(RAY), "start", "--head", "--block", "--num-cpus=0", "--disable-usage-stats",
         f"--autoscaling-config={config}", f"--port={gcs}", f"--dashboard-port={dashboard}",
         "--dashboard-host=127.0.0.1", f"--ray-client-server-port={client}",
         f"--node-manager-port={node_manager}", f"--object-manager-port={object_manager}",
         f"--dashboard-agent-listen-port={agent_listen}",
         f"--dashboard-agent-grpc-port={agent_grpc}", f"--metrics-export-port={metrics}",
         f"--runtime-env-agent-port={runtime_env_agent}", f"--temp-dir={temp_dir}",
         # A lost node is declared dead after 2 missed 1 s health checks (default 5 x 3 s).
         '--system-config={"health_check_period_ms":1000,"health_check_failure_threshold":2}'],
        env=head_env, stdout=(Path(temp_dir) / "head.log").open("w"),
        stderr=subprocess.STDOUT, start_new_session=True)
    try:
        cluster = AutoscalingCluster(gcs_address, f"http://127.0.0.1:{dashboard}",
                                     {**env, "RAY_ADDRESS": gcs_address}, temp_dir)
        wait_until_up(cluster, head, dashboard)
        yield cluster
    finally:
        stop(head, temp_dir)


def wait_until_up(cluster: AutoscalingCluster, head: subprocess.Popen, dashboard: int,
                  timeout_s: float = 120) -> None:
    """The dashboard answers and `ray start --block` still runs (it exits, stopping all, when
    one of its processes does: the autoscaler's monitor, say)."""
    deadline = time.time() + timeout_s
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", dashboard)) == 0:
                break
        assert head.poll() is None, (Path(cluster.temp_dir) / "head.log").read_text()[-3000:]
        assert time.time() < deadline, f"the head's dashboard did not come up in {timeout_s} s"
        time.sleep(1)
    cluster.records()
    time.sleep(2)  # the monitor reads its config once the head is up
    assert head.poll() is None, (Path(cluster.temp_dir) / "head.log").read_text()[-3000:]


def stop(head: subprocess.Popen, temp_dir: str) -> None:
    """SIGTERM to `ray start --block` stops what it started; what is left of its process group
    after a few seconds is killed, then any process still running in the cluster's temp dir."""
    import psutil

    os.killpg(head.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGKILL)
    head.wait()
    for process in psutil.process_iter(["pid", "cmdline"]):
        if any(f"{temp_dir}/" in arg or arg.endswith(temp_dir)
               for arg in process.info["cmdline"] or []):
            with contextlib.suppress(psutil.Error):
                process.kill()
    shutil.rmtree(temp_dir, ignore_errors=True)


RECORDS = """
import dataclasses, json, sys
from ray.util.state import list_actors, list_cluster_events, list_nodes
address = sys.argv[1]


def events():  # None when the dashboard cannot read them (it answers 500 at times)
    for _ in range(3):
        try:
            return [{"time": e.time, "message": e.message}
                    for e in list_cluster_events(address=address, limit=10000)]
        except Exception:
            continue


print(json.dumps({
    "nodes": [dataclasses.asdict(n)
              for n in list_nodes(address=address, detail=True, limit=1000)],
    "actors": [{"class_name": a.class_name, "node_id": a.node_id, "state": a.state}
               for a in list_actors(address=address, detail=True, limit=10000)],
    "events": events()}, default=str))
"""
