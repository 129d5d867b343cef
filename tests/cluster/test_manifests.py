"""cluster/: deployment files checked without a cluster.

- KubeRay manifests against the openAPIV3Schema of KubeRay's CRDs (as the API server would),
  plus what the schema cannot say: head without work, GPU groups that ask for and tolerate
  GPUs, enough GPUs for the recipe, one shared volume, no literal secrets.
- The `ray up` YAML against the cluster schema that ships inside Ray, and Ray's own checks.
- The runtime env against pyproject.toml and against what the driver passes to ray.init.
(tests/test_config.py already loads every file under configs/.)
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shlex
from importlib import metadata
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from temporal_ray.config import Config, load_config

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT.parent / "shared" / "kuberay-crds"
KUBERAY_DIR = ROOT / "cluster" / "kuberay"
MANIFESTS = sorted(KUBERAY_DIR.glob("*.yaml"))
RAYCLUSTERS = sorted(KUBERAY_DIR.glob("raycluster-*.yaml"))
RAYJOBS = sorted(KUBERAY_DIR.glob("rayjob-*.yaml"))
LAUNCHER = ROOT / "cluster" / "cluster-launcher" / "aws-gpu.yaml"
RUNTIME_ENV = ROOT / "cluster" / "runtime_env.yaml"

RAY_VERSION = metadata.version("ray")
IMAGE = f"rayproject/ray:{RAY_VERSION}-py311-gpu"
GPU = "nvidia.com/gpu"
SHARED_MOUNT = "/mnt"
# GPUs per instance of the AWS types the launcher YAML may name.
AWS_GPUS = {"p4d.24xlarge": 8, "p4de.24xlarge": 8, "p5.48xlarge": 8, "p5e.48xlarge": 8,
            "g5.48xlarge": 8}
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|KEY|CREDENTIAL", re.IGNORECASE)
SECRET_VALUE = re.compile(r"hf_[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16}"
                          r"|-----BEGIN [A-Z ]*PRIVATE KEY-----")


def ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def read_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@functools.cache
def load_crd(path: Path) -> dict[str, Any]:
    """One CRD file, parsed once (17,000 to 25,000 lines; the C loader when PyYAML has it)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(path.read_text(encoding="utf-8"), Loader=loader)


# ------------------------------------------------------------ OpenAPI v3 -> JSON Schema


def structural(node: Any) -> Any:
    """A CRD's openAPIV3Schema as a JSON Schema that is as strict as the API server.

    Kubernetes structural schemas prune or reject fields they do not declare, so every object
    with `properties` (and neither `additionalProperties` nor
    `x-kubernetes-preserve-unknown-fields`) gets `additionalProperties: false`.
    `x-kubernetes-int-or-string` becomes integer-or-string, `nullable` allows null, the other
    `x-kubernetes-*` keys (list types, CEL rules) are dropped: jsonschema cannot check them.
    """
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key == "nullable":
            continue
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {name: structural(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = structural(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [structural(sub) for sub in value]
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if ("properties" in node and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def crd_validator(kind: str, api_version: str) -> jsonschema.Draft7Validator:
    if not CRD_DIR.is_dir():
        pytest.skip(f"KubeRay CRDs not found at {CRD_DIR} (expected beside the repository)")
    return _crd_validator(kind, api_version)


@functools.cache
def _crd_validator(kind: str, api_version: str) -> jsonschema.Draft7Validator:
    """The validator for one kind and version, from the CRD file that defines that kind."""
    group, _, version = api_version.partition("/")
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = load_crd(path)
        if crd.get("kind") != "CustomResourceDefinition":
            continue
        spec = crd["spec"]
        if spec["names"]["kind"] != kind or spec["group"] != group:
            continue
        for entry in spec["versions"]:
            if entry["name"] == version:
                schema = structural(entry["schema"]["openAPIV3Schema"])
                jsonschema.Draft7Validator.check_schema(schema)
                return jsonschema.Draft7Validator(schema)
        raise AssertionError(f"{path.name} defines {kind} but not version {version}")
    raise AssertionError(f"no CRD in {CRD_DIR} defines kind {kind} in group {group}")


def crd_errors(manifest: dict[str, Any]) -> list[str]:
    validator = crd_validator(manifest["kind"], manifest["apiVersion"])
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
            for e in validator.iter_errors(manifest)]


# ------------------------------------------------------------------- manifest helpers


def cluster_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    """The RayCluster spec of a RayCluster or of a RayJob."""
    return manifest["spec"]["rayClusterSpec"] if manifest["kind"] == "RayJob" else manifest["spec"]


def pod_specs(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(group name, pod spec) for the head and every worker group of a RayCluster spec."""
    pods = [("head", spec["headGroupSpec"]["template"]["spec"])]
    pods += [(g["groupName"], g["template"]["spec"]) for g in spec.get("workerGroupSpecs", [])]
    return pods


def gpus(container: dict[str, Any]) -> int:
    resources = container.get("resources", {})
    return int(resources.get("limits", {}).get(GPU, 0) or resources.get("requests", {})
               .get(GPU, 0))


def pod_gpus(pod: dict[str, Any]) -> int:
    return sum(gpus(c) for c in pod["containers"])


def tolerates_gpu_taint(pod: dict[str, Any]) -> bool:
    """Tolerates `nvidia.com/gpu[=any value]:NoSchedule`, the usual taint of GPU node pools."""
    return any(t.get("key") == GPU and t.get("operator") == "Exists"
               and t.get("effect") in (None, "NoSchedule") for t in pod.get("tolerations", []))


def rayjob_config_path(manifest: dict[str, Any]) -> Path:
    argv = shlex.split(manifest["spec"]["entrypoint"])
    assert argv[:2] == ["python", "jobs/run.py"], argv
    return ROOT / argv[argv.index("--config") + 1]


def secret_literals(node: Any, where: str = "") -> list[str]:
    """Places that give a secret-looking variable a literal value, or hold a token itself."""
    found = []
    if isinstance(node, dict):
        name = node.get("name")
        if isinstance(name, str) and "value" in node and SECRET_NAME.search(name):
            found.append(f"{where}: env {name} has a literal value")
        for key, value in node.items():
            if (isinstance(value, str | int | float) and SECRET_NAME.search(str(key))
                    and key not in ("key", "secretKeyRef")):
                found.append(f"{where}.{key}: literal value")
            found += secret_literals(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += secret_literals(value, f"{where}[{i}]")
    elif isinstance(node, str) and SECRET_VALUE.search(node):
        found.append(f"{where}: looks like a credential")
    return found


def runtime_env_of(rayjob: dict[str, Any]) -> dict[str, Any]:
    return yaml.safe_load(rayjob["spec"]["runtimeEnvYAML"])


# ------------------------------------------------------------------ KubeRay: schema


def test_kuberay_manifests_exist():
    assert {p.name for p in MANIFESTS} >= {"raycluster-8b.yaml", "raycluster-70b.yaml",
                                            "rayjob-8b.yaml", "rayjob-70b.yaml"}


@pytest.mark.parametrize("path", MANIFESTS, ids=ids(MANIFESTS))
def test_manifest_validates_against_its_crd(path):
    manifest = read_yaml(path)
    assert manifest["apiVersion"] == "ray.io/v1"
    assert manifest["metadata"]["name"]
    assert crd_errors(manifest) == []


def misspell(manifest: dict[str, Any], dotted: str, new_key: str) -> dict[str, Any]:
    """A copy with the key at a dotted path (list indices as numbers) renamed."""
    broken = copy.deepcopy(manifest)
    *parents, last = dotted.split(".")
    node: Any = broken
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[new_key] = node.pop(last)
    return broken


@pytest.mark.parametrize(("file", "dotted", "typo"), [
    ("raycluster-8b.yaml", "spec.headGroupSpec.rayStartParams", "rayStartParam"),
    ("raycluster-8b.yaml", "spec.workerGroupSpecs.0.replicas", "replica"),
    ("raycluster-70b.yaml", "spec.autoscalerOptions.idleTimeoutSeconds", "idleTimeoutSecond"),
    ("raycluster-70b.yaml",
     "spec.workerGroupSpecs.0.template.spec.containers.0.resources", "resource"),
    ("rayjob-8b.yaml", "spec.shutdownAfterJobFinishes", "shutdownAfterJobFinish"),
    ("rayjob-70b.yaml", "spec.rayClusterSpec.workerGroupSpecs.0.template.spec.tolerations",
     "toleration"),
])
def test_validator_rejects_a_misspelt_field(file, dotted, typo):
    manifest = read_yaml(KUBERAY_DIR / file)
    assert crd_errors(manifest) == []
    errors = crd_errors(misspell(manifest, dotted, typo))
    assert any(repr(typo) in e and "not allowed" in e for e in errors), errors


def test_validator_rejects_wrong_types_and_enums():
    manifest = read_yaml(KUBERAY_DIR / "raycluster-8b.yaml")
    broken = copy.deepcopy(manifest)
    broken["spec"]["workerGroupSpecs"][0]["maxReplicas"] = "two"
    broken["spec"]["autoscalerOptions"]["version"] = "v3"
    broken["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0  # must be a string
    errors = crd_errors(broken)
    assert len(errors) == 3, errors


def test_int_or_string_quantities_accept_both_and_check_the_pattern():
    manifest = read_yaml(KUBERAY_DIR / "raycluster-8b.yaml")
    limits = manifest["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0][
        "resources"]["limits"]
    limits[GPU] = 8
    assert crd_errors(manifest) == []
    limits[GPU] = "eight"
    assert crd_errors(manifest) != []


def test_structural_conversion():
    schema = structural({
        "type": "object",
        "properties": {
            "q": {"x-kubernetes-int-or-string": True,
                  "anyOf": [{"type": "integer"}, {"type": "string"}]},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                     "properties": {"a": {"type": "string"}}},
            "map": {"type": "object", "additionalProperties": {"type": "string"}},
            "t": {"type": "string", "nullable": True},
            "n": {"x-kubernetes-int-or-string": True},
        },
        "x-kubernetes-validations": [{"rule": "true"}],
    })
    validator = jsonschema.Draft7Validator(schema)
    assert "x-kubernetes-validations" not in schema
    assert validator.is_valid({"q": 1, "n": "1", "free": {"b": 1}, "map": {"k": "v"}, "t": None})
    assert not validator.is_valid({"unknown": 1})
    assert not validator.is_valid({"map": {"k": 1}})
    assert not validator.is_valid({"n": 1.5})


# ------------------------------------------------------ KubeRay: what the schema cannot say


@pytest.mark.parametrize("path", MANIFESTS, ids=ids(MANIFESTS))
def test_head_does_no_work(path):
    spec = cluster_spec(read_yaml(path))
    head = spec["headGroupSpec"]
    assert head["rayStartParams"].get("num-cpus") == "0"
    assert pod_gpus(head["template"]["spec"]) == 0
    assert "num-gpus" not in head["rayStartParams"]


@pytest.mark.parametrize("path", MANIFESTS, ids=ids(MANIFESTS))
def test_worker_groups(path):
    spec = cluster_spec(read_yaml(path))
    groups = spec["workerGroupSpecs"]
    gpu_groups = [g for g in groups if pod_gpus(g["template"]["spec"])]
    cpu_groups = [g for g in groups if not pod_gpus(g["template"]["spec"])]
    assert gpu_groups and cpu_groups
    for g in groups:
        assert 0 <= g["minReplicas"] <= g.get("replicas", 0) <= g["maxReplicas"], g["groupName"]
        assert ("gpu" in g["groupName"]) == (g in gpu_groups), g["groupName"]
    for g in gpu_groups:
        pod = g["template"]["spec"]
        assert tolerates_gpu_taint(pod), f"{g['groupName']} does not tolerate the GPU taint"
        for c in pod["containers"]:
            limits, requests = c["resources"]["limits"], c["resources"].get("requests", {})
            # Kubernetes requires requests == limits for extended resources such as GPUs.
            assert GPU not in requests or str(requests[GPU]) == str(limits[GPU])


@pytest.mark.parametrize("path", MANIFESTS, ids=ids(MANIFESTS))
def test_autoscaling_and_images(path):
    spec = cluster_spec(read_yaml(path))
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["autoscalerOptions"]["version"] == "v2"
    assert spec["rayVersion"] == RAY_VERSION
    for group, pod in pod_specs(spec):
        assert pod["containers"][0]["image"] == IMAGE, group


@pytest.mark.parametrize("path", MANIFESTS, ids=ids(MANIFESTS))
def test_every_pod_mounts_the_shared_volume(path):
    spec = cluster_spec(read_yaml(path))
    claims = set()
    for group, pod in pod_specs(spec):
        pvcs = {v["name"]: v["persistentVolumeClaim"]["claimName"]
                for v in pod.get("volumes", []) if "persistentVolumeClaim" in v}
        mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0].get("volumeMounts", [])}
        assert mounts.get(SHARED_MOUNT) in pvcs, f"{group}: no PVC mounted at {SHARED_MOUNT}"
        claims.add(pvcs[mounts[SHARED_MOUNT]])
    assert len(claims) == 1, claims


@pytest.mark.parametrize("path", MANIFESTS, ids=ids(MANIFESTS))
def test_no_literal_secrets(path):
    manifest = read_yaml(path)
    found = secret_literals(manifest)
    if manifest["kind"] == "RayJob":
        found += secret_literals(runtime_env_of(manifest), "runtimeEnvYAML")
    assert found == []
    for _, pod in pod_specs(cluster_spec(manifest)):
        for c in pod["containers"]:
            for env in c.get("env", []):
                if SECRET_NAME.search(env["name"]):
                    assert "secretKeyRef" in env["valueFrom"], env["name"]


def test_secret_check_finds_a_planted_literal():
    manifest = read_yaml(KUBERAY_DIR / "raycluster-8b.yaml")
    container = manifest["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    container["env"].append({"name": "HF_TOKEN", "value": "not-a-real-token"})
    container["env"].append({"name": "NOTE", "value": "hf_" + "x" * 30})
    assert len(secret_literals(manifest)) == 2
    assert secret_literals({"env_vars": {"AWS_SECRET_ACCESS_KEY": "abc"}}) != []


@pytest.mark.parametrize("path", RAYCLUSTERS, ids=ids(RAYCLUSTERS))
def test_rayjob_runs_on_the_same_cluster_spec(path):
    rayjob = KUBERAY_DIR / path.name.replace("raycluster-", "rayjob-")
    assert read_yaml(rayjob)["spec"]["rayClusterSpec"] == read_yaml(path)["spec"]


@pytest.mark.parametrize("path", RAYJOBS, ids=ids(RAYJOBS))
def test_rayjob_entrypoint_and_lifecycle(path):
    manifest = read_yaml(path)
    spec = manifest["spec"]
    assert (ROOT / "jobs" / "run.py").is_file()
    config_path = rayjob_config_path(manifest)
    assert config_path.is_file(), config_path
    assert isinstance(load_config(config_path), Config)
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] > 0
    assert spec.get("submissionMode", "K8sJobMode") == "K8sJobMode"


@pytest.mark.parametrize("path", RAYJOBS, ids=ids(RAYJOBS))
def test_rayjob_runtime_env(path):
    from ray.runtime_env import RuntimeEnv

    manifest = read_yaml(path)
    env = runtime_env_of(manifest)
    # Ray's own validation of every field but working_dir, which exists in the submitter pod.
    RuntimeEnv(**{key: value for key, value in env.items() if key != "working_dir"})
    shared = read_yaml(RUNTIME_ENV)
    for key in ("pip", "env_vars", "excludes"):
        assert env[key] == shared[key], key
    # working_dir is uploaded by the submitter pod, so it must lie on a volume that pod mounts.
    submitter = manifest["spec"]["submitterPodTemplate"]["spec"]
    assert submitter["restartPolicy"] == "Never"   # a Kubernetes Job allows Never or OnFailure
    mounts = [m["mountPath"] for m in submitter["containers"][0]["volumeMounts"]]
    assert any(env["working_dir"].startswith(m.rstrip("/") + "/") for m in mounts)
    assert not submitter["containers"][0].get("command"), "KubeRay supplies the command"


@pytest.mark.parametrize("path", RAYJOBS, ids=ids(RAYJOBS))
def test_cluster_is_big_enough_for_its_recipe(path):
    manifest = read_yaml(path)
    cfg = load_config(rayjob_config_path(manifest))
    gpu_groups = [g for g in manifest["spec"]["rayClusterSpec"]["workerGroupSpecs"]
                  if pod_gpus(g["template"]["spec"])]
    per_pod = max(pod_gpus(g["template"]["spec"]) for g in gpu_groups)
    total = sum(g["maxReplicas"] * pod_gpus(g["template"]["spec"]) for g in gpu_groups)
    assert cfg.dpo.use_gpu and cfg.dpo.workers <= total
    assert cfg.engine.actors * cfg.engine.tensor_parallel_size <= total
    assert cfg.engine.tensor_parallel_size <= per_pod   # one engine never spans two pods
    for value in (cfg.model.path, cfg.data.prompts, cfg.storage.run_dir):
        assert value.startswith(SHARED_MOUNT + "/"), value


# ------------------------------------------------------------------ the GPU recipes


GPU_CONFIGS = [ROOT / "configs" / "llama-3.1-8b.yaml", ROOT / "configs" / "llama-3.1-70b.yaml"]


@pytest.mark.parametrize("path", GPU_CONFIGS, ids=ids(GPU_CONFIGS))
def test_gpu_recipes_follow_the_paper(path):
    from temporal_ray.training.launch import check_batch_geometry

    cfg = load_config(path)
    assert cfg.method.name.value == "temporal"
    assert cfg.generation.samples == 7
    assert (cfg.generation.temperature, cfg.generation.top_p) == (0.7, 0.9)
    assert (cfg.judge.kind, cfg.judge.samples) == ("llm", 3)
    assert (cfg.dpo.beta, cfg.dpo.lr, cfg.dpo.min_lr) == (0.1, 1e-6, 1e-7)
    assert (cfg.dpo.warmup_ratio, cfg.dpo.epochs, cfg.dpo.batch_size) == (0.1, 1, 32)
    assert cfg.dpo.use_gpu and cfg.dpo.zero_stage == 3
    assert cfg.engine.kind == "vllm"
    assert cfg.engine.gpus_per_actor == cfg.engine.tensor_parallel_size
    check_batch_geometry(cfg.dpo)


# ------------------------------------------------------------------ the runtime env


def test_runtime_env_pip_is_pyproject():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    wanted = project["dependencies"] + extras["gpu"] + extras["eval"]  # eval: HumanEval
    assert read_yaml(RUNTIME_ENV)["pip"] == wanted


def test_runtime_env_is_valid_for_ray_and_has_no_secrets():
    from ray.runtime_env import RuntimeEnv

    env = read_yaml(RUNTIME_ENV)
    RuntimeEnv(**env)   # Ray's own validation of every field
    assert "working_dir" not in env   # given by `--working-dir .` on the command line
    assert env["env_vars"]["HF_HUB_OFFLINE"] == "1"
    assert all(isinstance(v, str) for v in env["env_vars"].values())
    assert secret_literals(env) == []


@pytest.mark.parametrize("source", [RUNTIME_ENV, *RAYJOBS], ids=ids([RUNTIME_ENV, *RAYJOBS]))
def test_job_runtime_env_merges_with_the_drivers(source, monkeypatch):
    """Inside a job, ray.init(runtime_env=...) in start_ray is merged with the job's runtime env,
    and Ray refuses to start when both set the same env var."""
    import ray
    from ray.runtime_env.runtime_env import _merge_runtime_env

    from temporal_ray.run.session import start_ray

    captured = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: captured.update(kwargs))
    start_ray(load_config(GPU_CONFIGS[0]))
    data = read_yaml(source)
    job_env = runtime_env_of(data) if source in RAYJOBS else data
    assert _merge_runtime_env(job_env, captured.get("runtime_env")) is not None


# ------------------------------------------------------------------ `ray up` (AWS)


def ray_cluster_schema() -> dict[str, Any]:
    import ray.autoscaler

    path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    return json.loads(path.read_text(encoding="utf-8"))


def test_launcher_validates_against_ray_schema():
    jsonschema.validate(read_yaml(LAUNCHER), ray_cluster_schema())


@pytest.mark.parametrize(("dotted", "typo"), [
    ("idle_timeout_minutes", "idle_timeout_minute"),
    ("available_node_types.gpu_8x.min_workers", "min_worker"),
    ("docker.run_options", "run_option"),
])
def test_launcher_schema_rejects_a_misspelt_key(dotted, typo):
    broken = misspell(read_yaml(LAUNCHER), dotted, typo)
    with pytest.raises(jsonschema.ValidationError, match=typo):
        jsonschema.validate(broken, ray_cluster_schema())


def test_launcher_passes_rays_own_checks():
    from ray.autoscaler._private.commands import prepare_config
    from ray.autoscaler._private.util import validate_config

    validate_config(prepare_config(read_yaml(LAUNCHER)))   # defaults filled, as `ray up` does


def test_launcher_node_types():
    cfg = read_yaml(LAUNCHER)
    types = cfg["available_node_types"]
    assert types[cfg["head_node_type"]]["resources"] == {"CPU": 0}
    workers = {name: t for name, t in types.items() if name != cfg["head_node_type"]}
    gpu = {n: t for n, t in workers.items() if t["node_config"]["InstanceType"] in AWS_GPUS}
    assert gpu and len(gpu) < len(workers), "a GPU worker type and a CPU worker type"
    for t in workers.values():
        assert 0 <= t["min_workers"] <= t["max_workers"] <= cfg["max_workers"]
    gpus_at_most = sum(t["max_workers"] * AWS_GPUS[t["node_config"]["InstanceType"]]
                       for t in gpu.values())
    for path in GPU_CONFIGS:
        recipe = load_config(path)
        assert recipe.dpo.workers <= gpus_at_most
        assert recipe.engine.actors * recipe.engine.tensor_parallel_size <= gpus_at_most
    assert cfg["idle_timeout_minutes"] > 0
    assert cfg["docker"]["image"] == IMAGE
    assert f"-v {SHARED_MOUNT}:{SHARED_MOUNT}" in cfg["docker"]["run_options"]


def test_launcher_installs_this_repository():
    cfg = read_yaml(LAUNCHER)
    for remote, local in cfg["file_mounts"].items():
        assert (ROOT / local).exists(), f"file mount {remote}: {local} is not in the repository"
    targets = {remote.rstrip("/") for remote in cfg["file_mounts"]}
    assert {"~/temporal-ray/pyproject.toml", "~/temporal-ray/temporal_ray"} <= targets
    assert any('pip install -e ".[gpu]"' in c for c in cfg["setup_commands"])
    assert secret_literals(cfg) == []
