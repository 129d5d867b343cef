"""Weights & Biases as a tracking backend: one W&B run per tracked root, children as prefixes.

W&B has no nested runs, so the tracker's tree is folded into one run (project: the config's,
group: the run directory's name, job type: the method or kind):
  - a child's metrics are named under its key path: `iter_0/model/dpo/loss`, in the miniature
    `temporal/iter_0/model/dpo/loss`, so a panel search on `iter_0/`, `/model/` or `temporal/`
    filters by iteration, stage or method;
  - W&B's own `_step` counts log calls and only goes forward, so each metric is plotted
    against a hidden step metric of its prefix (`iter_0/model/dpo/step`, `dpo/step`,
    `collapse/step`; define_metric): a stage's DPO steps, the run-wide global steps, an
    iteration, a checkpoint;
  - parameters and tags go into the run's config, a child's under its prefix
    (`iter_0/model/kind`, `iter_0/model/tags/stage`); the root's short tags are W&B tags too
    (`method:temporal`);
  - manifests and artifacts are run files (copied under the child's prefix, `run.save`), which
    `wandb sync` uploads with an offline run.

Mode (resolve_mode): `auto` is online with WANDB_API_KEY set, else offline; WANDB_MODE=offline
forces offline. The files land in <run_dir>/wandb (offline runs as wandb/offline-run-*)
unless WANDB_DIR is set.

Resume: an offline W&B run cannot be read back, nor can a point be deleted, so what was logged
is kept in a ledger, the `wandb` entry of tracking.json beside the MLflow ids: the run id
(reopened with resume="allow"), each child's tags and whether it finished (the tracker's
`done`, as MLflow's run status), and each metric's last step. A point at or before its
metric's last step is not logged again. A stage redone since it was logged gets a new prefix
(`iter_0/model~redo1`): its old points stay in W&B's history.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from temporal_ray.config import ConfigError
from temporal_ray.storage.run_dir import RunDir
from temporal_ray.tracking.mlflow_store import RUN_IDS

if TYPE_CHECKING:
    from wandb.sdk.wandb_run import Run

logger = logging.getLogger(__name__)

REDO = "~redo"
"""Suffix of a redone child's prefix: iter_0/model~redo1."""
MAX_TAG_LENGTH = 64  # W&B refuses longer run tags (run_dir stays in the config only)


def resolve_mode(mode: str, environ: Mapping[str, str]) -> str:
    """The mode wandb.init gets: WANDB_MODE=offline (or disabled) wins; `auto` is online with
    an API key, offline without; `online` without a key is refused here, not in a prompt."""
    forced = environ.get("WANDB_MODE", "")
    if forced == "disabled":
        return forced
    if forced in ("offline", "dryrun"):  # dryrun: wandb's old name for offline
        return "offline"
    has_key = bool(environ.get("WANDB_API_KEY"))
    if mode == "auto":
        return "online" if has_key else "offline"
    if mode == "online" and not has_key:
        raise ConfigError("tracking.wandb.mode=online needs WANDB_API_KEY in the driver's "
                          "environment (https://wandb.ai/authorize): set it, or use "
                          "tracking.wandb.mode=offline and upload later with "
                          "`wandb sync <storage.run_dir>/wandb`")
    return mode


def files_dir(run: RunDir, environ: Mapping[str, str]) -> str | None:
    """Where W&B keeps its files (in <dir>/wandb): WANDB_DIR when set (read here, as wandb
    reads its environment only once per process), else the run directory when local, else
    None with a note (wandb's default, ./wandb)."""
    if environ.get("WANDB_DIR"):
        return environ["WANDB_DIR"]
    if run.is_local():
        return run.path()
    logger.warning("tracking.wandb: %s is not local and WANDB_DIR is not set: W&B keeps its "
                   "files in ./wandb", run.uri)
    return None


def step_axis(name: str) -> str:
    """The hidden step metric `name` is plotted against: its prefix's (a/b/loss -> a/b/step)."""
    return f"{name.rsplit('/', 1)[0]}/step" if "/" in name else "step"


class Session:
    """One open W&B run and its ledger (tracking.json's `wandb` entry), shared by the nodes."""

    def __init__(self, wandb_run: Run, run: RunDir, ledger: dict[str, Any]):
        self.wandb_run, self.run, self.ledger = wandb_run, run, ledger
        ledger.setdefault("runs", {})
        ledger.setdefault("steps", {})
        self._defined: set[str] = set()

    def save(self) -> None:
        """The ledger into tracking.json, read again so that other backends' ids stay."""
        ids = json.loads(self.run.read_text(RUN_IDS) or "{}")
        self.run.write_text(RUN_IDS, json.dumps({**ids, "wandb": self.ledger}, indent=2))

    def define(self, name: str, axis: str) -> None:
        """`name` plotted against `axis` (once per session: each session file needs its own)."""
        if axis not in self._defined:
            self.wandb_run.define_metric(axis, hidden=True)
            self._defined.add(axis)
        if name not in self._defined:
            self.wandb_run.define_metric(name, step_metric=axis)
            self._defined.add(name)

    def save_file(self, relative: str) -> None:
        """A file already under the run's files directory, uploaded now (or at `wandb sync`)."""
        files = self.wandb_run.dir
        self.wandb_run.save(os.path.join(files, relative), base_path=files, policy="now",
                            glob=False)


class WandbRun:
    """A node of the tracker's tree in one W&B run: the root (path "") or a child."""

    def __init__(self, session: Session, path: str):
        self.session, self.path = session, path
        runs = session.ledger["runs"]
        redone = runs.get(path, {}).get("redone", 0)
        if "name" not in runs.get(path, {}):  # new, or redone since it was logged
            runs[path] = {"name": f"{path}{REDO}{redone}" if redone else path,
                          "redone": redone, "tags": {}, "done": False}
        self.entry: dict[str, Any] = runs[path]
        self.tags: dict[str, str] = self.entry["tags"]  # the ledger's own dict: kept as logged

    @classmethod
    def open_root(cls, run: RunDir, name: str, tags: dict[str, str], *, project: str,
                  entity: str | None, group: str, mode: str,
                  directory: str | None) -> WandbRun:
        """The run directory's W&B run: the one it made before (its id in tracking.json,
        same project and entity), else a new one."""
        import wandb

        ledger = json.loads(run.read_text(RUN_IDS) or "{}").get("wandb", {})
        if not ledger.get("id") or (ledger.get("project"), ledger.get("entity")) != (
                project, entity):
            ledger = {"id": uuid.uuid4().hex[:12], "project": project, "entity": entity}
        wandb_run = wandb.init(
            project=project, entity=entity, id=ledger["id"], resume="allow", mode=mode,
            dir=directory, name=name, group=group,
            job_type=tags.get("method") or tags.get("kind") or name, reinit="create_new",
            tags=[t for t in (f"{k}:{v}" for k, v in tags.items()) if len(t) <= MAX_TAG_LENGTH])
        root = cls(Session(wandb_run, run, ledger), "")
        root.reopen()
        root.log_tags(tags)
        return root

    @property
    def done(self) -> bool:
        return self.entry["done"]

    @property
    def prefix(self) -> str:
        """What this node's names start with: `` for the root, `iter_0/model/` for a stage."""
        return f"{self.entry['name']}/" if self.entry["name"] else ""

    def child(self, key: str, name: str, tags: dict[str, str]) -> WandbRun:
        """The child `key`, under this node's prefix (W&B shows no run names: `name` is the
        key)."""
        child = WandbRun(self.session, self.prefix + key)
        child.log_tags(tags)
        return child

    def discard_child(self, key: str) -> None:
        """Forget the child `key` (a stage redone since it was logged): the next `child`
        gets a new prefix, since W&B cannot delete the old points."""
        runs = self.session.ledger["runs"]
        path = self.prefix + key
        if path in runs:
            runs[path] = {"redone": runs[path].get("redone", 0) + 1}
            self.session.save()

    def reopen(self) -> None:
        if self.done:
            self.entry["done"] = False
            self.session.save()

    def log_tags(self, tags: dict[str, str]) -> None:
        new = {k: v for k, v in tags.items() if self.tags.get(k) != v}
        if new:
            self.session.wandb_run.config.update(
                {f"{self.prefix}tags/{k}": v for k, v in new.items()}, allow_val_change=True)
            self.tags.update(new)
            self.session.save()

    def log_params(self, params: dict[str, str]) -> None:
        """Into the config (again on a resume: the same values, and a changed one is what the
        run now uses)."""
        self.session.wandb_run.config.update(
            {self.prefix + k: v for k, v in params.items()}, allow_val_change=True)

    def log_points(self, points: list[tuple[str, float, int]]) -> None:
        """(name, value, step) points after their metric's last logged step, one W&B row per
        (step metric, step)."""
        last = self.session.ledger["steps"]
        rows: dict[tuple[str, int], dict[str, float]] = {}
        for name, value, step in points:
            full = self.prefix + name
            if step <= last.get(full, -1):
                continue  # logged before this resume (or a step going back)
            axis = step_axis(full)
            self.session.define(full, axis)
            rows.setdefault((axis, step), {axis: step})[full] = value
            last[full] = step
        for row in rows.values():
            self.session.wandb_run.log(row)
        if rows:  # after the rows: a crash in between repeats them rather than drops them
            self.session.save()

    def log_dict(self, data: dict[str, Any], name: str) -> None:
        relative = self.prefix + name
        path = os.path.join(self.session.wandb_run.dir, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(data, f, indent=2, default=str)
        self.session.save_file(relative)

    def log_artifact(self, path: str) -> None:
        """A copy of the file (or a directory's files) under the run's files, at this node's
        prefix; logged again, it replaces the earlier copy."""
        if not os.path.exists(path):  # a remote run directory's file: not worth a failed run
            logger.warning("tracking.wandb: %s is not a local file: not uploaded", path)
            return
        base = os.path.basename(path.rstrip("/"))
        target = os.path.join(self.session.wandb_run.dir, self.prefix + base)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.isdir(path):
            shutil.copytree(path, target, dirs_exist_ok=True)
            saved = [os.path.relpath(os.path.join(d, f), self.session.wandb_run.dir)
                     for d, _, names in os.walk(target) for f in names]
        else:
            shutil.copyfile(path, target)
            saved = [self.prefix + base]
        for relative in saved:
            self.session.save_file(relative)

    def finish(self) -> None:
        """Marked done in the ledger; the root also ends the W&B run."""
        self.entry["done"] = True
        self.session.save()
        if not self.path:
            self.session.wandb_run.finish()
