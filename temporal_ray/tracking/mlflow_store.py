"""MLflow as a tracking backend: one MLflow run per tracked run, children as nested runs.

The store is MLflow's own (the default: a file store <run_dir>/mlruns); what was logged is
read back from it, so that a resumed run finds its runs and never logs a point twice:
  - the root run's id is kept in the run directory (`tracking.json`), so it moves with it,
  - a child is found by its key tag under its parent (`temporal_ray.key`, e.g. iter_0/model),
  - a (metric, step) already in the store is not logged again, nor is a known parameter.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import TYPE_CHECKING, Any

from temporal_ray.storage.run_dir import RunDir

if TYPE_CHECKING:
    from mlflow import MlflowClient

FILE_STORE = "mlruns"
"""The default store's directory inside the run directory."""
RUN_IDS = "tracking.json"
"""Beside config.yaml: the root run's id in the store, per backend."""
KEY_TAG = "temporal_ray.key"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own: the UI nests a run under this one
MAX_PARAM_LENGTH = 6000  # MLflow refuses longer parameter values
BATCH = 100  # MLflow takes at most 100 parameters (and 1000 metrics) per log_batch


def store_uri(uri: str | None, run: RunDir) -> str | None:
    """The tracking URI: the configured one, or the file store in a local run directory."""
    if uri:
        return uri
    if not run.is_local():
        return None
    # The file store is in maintenance mode in MLflow 3 and refuses to open without this;
    # it is the store that needs no server, which is what the embedded default wants.
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return "file://" + run.path(FILE_STORE)


def safe_key(key: str) -> str:
    """A name MLflow accepts: letters, digits and `_-. /`, no `..`, not absolute."""
    return re.sub(r"[^\w\-. /]", "_", key).replace("..", "_").strip("/ ")[:250] or "_"


class MlflowRun:
    """One MLflow run; `child` finds or makes a nested one."""

    def __init__(self, client: MlflowClient, experiment_id: str, run_id: str):
        self.client, self.experiment_id, self.run_id = client, experiment_id, run_id
        run = client.get_run(run_id)
        self.params = dict(run.data.params)
        self.tags = dict(run.data.tags)
        self.done = run.info.status == "FINISHED"
        self._steps: dict[str, set[int]] = {}
        self._children: dict[str, str] | None = None

    @classmethod
    def open_root(cls, uri: str, experiment: str, run: RunDir, name: str,
                  tags: dict[str, str]) -> MlflowRun:
        """The run directory's root run: the one it made before, else a new one."""
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment)
        experiment_id = (found.experiment_id if found is not None
                         else client.create_experiment(experiment))
        ids = json.loads(run.read_text(RUN_IDS) or "{}")
        known = ids.get("mlflow", {})
        if known.get("uri") == uri and _exists(client, known.get("run_id")):
            root = cls(client, experiment_id, known["run_id"])
            root.reopen()
            return root
        created = client.create_run(experiment_id, run_name=name, tags=tags)
        run.write_text(RUN_IDS, json.dumps(
            {**ids, "mlflow": {"uri": uri, "run_id": created.info.run_id}}, indent=2))
        return cls(client, experiment_id, created.info.run_id)

    def child(self, key: str, name: str, tags: dict[str, str]) -> MlflowRun:
        """The nested run with `key`, found in the store or made."""
        if self._children is None:
            found = self.client.search_runs(
                [self.experiment_id], f"tags.`{PARENT_TAG}` = '{self.run_id}'",
                max_results=50000)
            self._children = {r.data.tags.get(KEY_TAG): r.info.run_id for r in found}
        if key not in self._children:
            created = self.client.create_run(
                self.experiment_id, run_name=name,
                tags={**tags, KEY_TAG: key, PARENT_TAG: self.run_id})
            self._children[key] = created.info.run_id
        return MlflowRun(self.client, self.experiment_id, self._children[key])

    def discard_child(self, key: str) -> None:
        """Delete the nested run `key` (a stage redone since it was logged: MLflow hides
        it), so that `child` makes a new one."""
        if self._children and key in self._children:
            self.client.delete_run(self._children.pop(key))

    def reopen(self) -> None:
        if self.done:
            self.client.update_run(self.run_id, status="RUNNING")
            self.done = False

    def log_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            if self.tags.get(key) != value:
                self.client.set_tag(self.run_id, key, value)
                self.tags[key] = value

    def log_params(self, params: dict[str, str]) -> None:
        """Parameters not logged yet (MLflow refuses to change one: a changed value is left,
        and the run's config.yaml says what it ran with)."""
        from mlflow.entities import Param

        new = {safe_key(k): v[:MAX_PARAM_LENGTH] for k, v in params.items()}
        new = {k: v for k, v in new.items() if k not in self.params}
        items = [Param(k, v) for k, v in new.items()]
        for start in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, params=items[start:start + BATCH])
        self.params.update(new)

    def log_points(self, points: list[tuple[str, float, int]]) -> None:
        """(name, value, step) points whose (name, step) the store does not hold yet."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = []
        for name, value, step in points:
            key = safe_key(name)
            if step not in self._logged_steps(key):
                items.append(Metric(key, value, now, step))
                self._steps[key].add(step)
        for start in range(0, len(items), 10 * BATCH):
            self.client.log_batch(self.run_id, metrics=items[start:start + 10 * BATCH])

    def _logged_steps(self, key: str) -> set[int]:
        if key not in self._steps:
            self._steps[key] = {m.step for m in self.client.get_metric_history(self.run_id, key)}
        return self._steps[key]

    def log_dict(self, data: dict[str, Any], name: str) -> None:
        self.client.log_dict(self.run_id, data, name)

    def log_artifact(self, path: str) -> None:
        """A file (or a directory's files) under the run's artifacts; logged again, it
        replaces the earlier copy."""
        if os.path.isdir(path):
            self.client.log_artifacts(self.run_id, path, os.path.basename(path))
        else:
            self.client.log_artifact(self.run_id, path)

    def finish(self) -> None:
        self.client.set_terminated(self.run_id, "FINISHED")
        self.done = True


def _exists(client: MlflowClient, run_id: str | None) -> bool:
    from mlflow.exceptions import MlflowException

    if not run_id:
        return False
    try:
        return client.get_run(run_id).info.lifecycle_stage == "active"
    except MlflowException:
        return False
