"""The tracker with W&B on, offline, read back from the run's own `.wandb` files: the config, the
DPO steps per stage and run-wide as metrics.json has them, the manifests, and a resumed (or
interrupted, or redone) run continuing the same W&B run without a step logged twice.

wandb 0.31 ships no Python reader of its transaction log (wandb.sdk.internal.datastore is gone;
`wandb sync` reads the file in wandb-core), so `records` splits the file into its frames
(LevelDB's log format: 32 KiB blocks, each frame checked by its CRC) and parses each record
with wandb's own protobuf, `wandb_internal_pb2.Record`."""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections import Counter
from pathlib import Path

import pytest
from wandb.proto import wandb_internal_pb2

from temporal_ray.config import ConfigError
from temporal_ray.tracking import Tracker
from temporal_ray.tracking.wandb_store import resolve_mode, step_axis

STEP_KEYS = ("loss", "reward_margin", "reward_accuracy", "chosen_logps", "rejected_logps",
             "grad_norm", "lr", "tokens_per_s", "epoch")
BLOCK, HEADER = 32768, 7  # LevelDB log blocks; a file header and a frame header are 7 bytes
FULL, LAST = 1, 4  # frame types that end a record


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """wandb offline and quiet, its caches in tmp_path, no key or run of the caller's."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("CONFIG", "CACHE", "DATA"):
        monkeypatch.setenv(f"WANDB_{name}_DIR", str(tmp_path / f"wandb-{name.lower()}"))
    for name in ("WANDB_DIR", "WANDB_API_KEY", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_ID",
                 "WANDB_RESUME", "WANDB_RUN_GROUP", "WANDB_JOB_TYPE", "WANDB_TAGS"):
        monkeypatch.delenv(name, raising=False)


def with_wandb(cfg, mlflow: bool = False, mode: str = "auto"):
    return cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={
        "wandb": cfg.tracking.wandb.model_copy(update={"enabled": True, "mode": mode}),
        "mlflow": cfg.tracking.mlflow.model_copy(update={"enabled": mlflow})})})


def records(path: Path):
    """Each Record in a .wandb file, in order."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, record = HEADER, b""
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if kind == 0:
            break
        if pos + HEADER + length > len(data):
            break  # a frame still being written
        chunk = data[pos + HEADER:pos + HEADER + length]
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) == crc, f"{path} at {pos}"
        pos, record = pos + HEADER + length, record + chunk
        if kind in (FULL, LAST):
            yield wandb_internal_pb2.Record.FromString(record)
            record = b""


def sessions(wandb_dir: Path, timeout: float = 30.0) -> list[list]:
    """The records of each offline session of the directory's runs, oldest first. wandb-core
    may still be writing a file when finish() returns: wait for each session's exit record."""
    deadline = time.monotonic() + timeout
    while True:
        found = [list(records(p)) for p in wandb_dir.glob("offline-run-*/run-*.wandb")]
        if all(of_type(rs, "exit") for rs in found) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    start = [next(r.run.start_time.ToNanoseconds() for r in rs if r.HasField("run"))
             for rs in found]
    return [rs for _, rs in sorted(zip(start, found), key=lambda pair: pair[0])]


def of_type(session: list, kind: str) -> list:
    return [getattr(r, kind) for r in session if r.WhichOneof("record_type") == kind]


def rows(session: list) -> list[dict]:
    """The history rows (W&B's own `_step`, `_runtime`, `_timestamp` left out)."""
    return [{".".join(i.nested_key) or i.key: json.loads(i.value_json) for i in h.item
             if not (i.key or i.nested_key[0]).startswith("_")}
            for h in of_type(session, "history")]


def curve(all_rows: list[dict], name: str) -> list[tuple[int, float]]:
    """(step, value) of a metric, its step read from its own step metric."""
    return [(row[step_axis(name)], row[name]) for row in all_rows if name in row]


def config(session: list) -> dict:
    updates = [u for run in of_type(session, "run") for u in run.config.update]
    updates += [u for c in of_type(session, "config") for u in c.update]
    return {u.key: json.loads(u.value_json) for u in updates}


def test_the_offline_run_holds_config_stages_and_steps(offline, setup, run_stages):
    cfg, run = setup
    run_stages(with_wandb(cfg, mlflow=True), run)
    (session,) = sessions(Path(run.root) / "wandb")  # under the run directory
    ids = json.loads(run.read_text("tracking.json"))
    assert set(ids) == {"mlflow", "wandb"}  # both on, one file of ids
    (started,) = of_type(session, "run")
    assert (started.run_id, started.display_name, started.run_group, started.job_type) == (
        ids["wandb"]["id"], "temporal", "run", "temporal")
    assert "method:temporal" in started.tags
    assert of_type(session, "exit")  # finished

    params = config(session)
    assert params["dpo.beta"] == "0.2" and params["tracking.wandb.enabled"] == "True"
    assert params["tags/method"] == "temporal" and params["iter_0/pairs_anchored/kind"] == "pairs"
    assert {params[f"iter_0/model/tags/{k}"] for k in ("stage", "iteration", "kind", "method")} \
        == {"model", "0", "dpo", "temporal"}

    # Every DPO step of the stage against its own step metric, as metrics.json has it...
    history = rows(session)
    written = json.loads((Path(run.root) / "iter_0/model/metrics.json").read_text())["history"]
    for key in STEP_KEYS:
        assert curve(history, f"iter_0/model/dpo/{key}") == [(h["step"], h[key]) for h in written]
    # ...and run-wide: model_future's steps 1-4, then model's as 5-8.
    loss = curve(history, "dpo/loss")
    assert [step for step, _ in loss] == list(range(1, 9))
    assert [value for _, value in loss][4:] == [h["loss"] for h in written]
    metrics = {m.name: m for m in of_type(session, "metric")}
    assert metrics["iter_0/model/dpo/loss"].step_metric == "iter_0/model/dpo/step"
    assert metrics["iter_0/model/dpo/step"].options.hidden

    # The manifests: numbers at step 0, the whole as a run file; the collapse measures.
    assert curve(history, "iter_0/pairs_anchored/pairs") == [(0, 6)]
    assert curve(history, "iter_0/pairs_anchored/dropped.tie") == [(0, 2)]
    assert curve(history, "iter_0/model/optimizer_steps") == [(0, 4)]
    assert curve(history, "collapse/mean_gap") == [(0, 0.5)]
    assert curve(history, "collapse/dropped.tie") == [(0, 2)]
    saved = {f.path for files in of_type(session, "files") for f in files.files}
    assert {f"{stage}/manifest.json" for stage in ("iter_0/pairs_anchored",
                                                   "iter_0/model_future", "iter_0/model")} <= saved
    (files_dir,) = (Path(run.root) / "wandb").glob("offline-run-*/files")
    assert json.loads((files_dir / "iter_0/model/manifest.json").read_text())[
        "optimizer_steps"] == 4


def test_a_resumed_run_continues_the_same_run_without_duplicates(offline, setup, run_stages):
    cfg, run = setup
    cfg = with_wandb(cfg)
    run_stages(cfg, run)
    run_stages(cfg, run)  # the rerun: every stage reused, logged again
    first, second = sessions(Path(run.root) / "wandb")
    (a,), (b,) = of_type(first, "run"), of_type(second, "run")
    assert a.run_id == b.run_id == json.loads(run.read_text("tracking.json"))["wandb"]["id"]
    points = Counter((name, row[step_axis(name)]) for session in (first, second)
                     for row in rows(session) for name in row if not name.endswith("/step"))
    assert max(points.values()) == 1
    assert rows(second) == []  # nothing new to log
    assert len(curve(rows(first), "dpo/loss")) == 8


def test_an_interrupted_run_logs_the_rest_once(offline, setup, run_stages, publish_dpo):
    cfg, run = setup
    cfg = with_wandb(cfg)
    tracker = Tracker.open(cfg, run, "temporal", {"method": "temporal"}, method="temporal")
    done = publish_dpo(run, "iter_0/model_future", steps=4, start=0.69)
    tracker.log_stage("iter_0/model_future", done.manifest, done.path)
    tracker.runs[0].session.wandb_run.finish()  # the driver killed: wandb's exit hook ends it
    run_stages(cfg, run)
    first, second = sessions(Path(run.root) / "wandb")
    assert curve(rows(first), "iter_0/model_future/dpo/loss") != []
    assert curve(rows(second), "iter_0/model_future/dpo/loss") == []
    assert [s for s, _ in curve(rows(first), "dpo/loss")] == [1, 2, 3, 4]
    assert [s for s, _ in curve(rows(second), "dpo/loss")] == [5, 6, 7, 8]
    assert curve(rows(second), "iter_0/pairs_anchored/pairs") == [(0, 6)]


def test_a_redone_stage_gets_a_new_prefix(offline, setup, run_stages, publish_dpo,
                                           dpo_history):
    cfg, run = setup
    cfg = with_wandb(cfg)
    run_stages(cfg, run)
    run.discard_from("iter_0/model")
    redone = publish_dpo(run, "iter_0/model", steps=4, start=0.5)
    tracker = Tracker.open(cfg, run, "temporal", method="temporal")
    tracker.log_stage("iter_0/model", redone.manifest, redone.path)
    tracker.finish()
    first, second = sessions(Path(run.root) / "wandb")
    assert [v for _, v in curve(rows(second), "iter_0/model~redo1/dpo/loss")] == [
        h["loss"] for h in dpo_history(4, 0.5)]
    assert [v for _, v in curve(rows(first), "iter_0/model/dpo/loss")] == [
        h["loss"] for h in dpo_history(4, 0.69)]
    assert curve(rows(second), "iter_0/model/dpo/loss") == []


def test_a_method_nested_in_an_experiment_is_a_prefix(offline, setup, publish_dpo):
    """The miniature's shape: methods are children of the experiment's run, stages theirs."""
    cfg, run = setup
    cfg = with_wandb(cfg)
    tracker = Tracker.open(cfg, run, "miniature", {"kind": "miniature"})
    method = tracker.child("temporal", {"method": "temporal"}, method="temporal")
    method.log_config(cfg)
    stage = publish_dpo(run, "iter_0/model", steps=2, start=0.69)
    method.log_stage("iter_0/model", stage.manifest, stage.path)
    method.log_metrics("eval", {"answers": {"accuracy": 0.25}}, step=1)
    run.write_text("summary.json", "{}")
    method.log_artifact(run.path("summary.json"))
    method.finish()
    run.write_bytes("report/report.png", b"\x89PNG")
    tracker.log_artifact(run.path("report"))  # a directory's files
    tracker.log_artifact(run.path("report", "report.png"))
    tracker.finish()
    (session,) = sessions(Path(run.root) / "wandb")
    (started,) = of_type(session, "run")
    assert (started.display_name, started.job_type) == ("miniature", "miniature")
    history = rows(session)
    assert [s for s, _ in curve(history, "temporal/iter_0/model/dpo/loss")] == [1, 2]
    assert [s for s, _ in curve(history, "temporal/dpo/loss")] == [1, 2]
    assert curve(history, "temporal/eval/answers.accuracy") == [(1, 0.25)]
    params = config(session)
    assert params["temporal/dpo.beta"] == "0.2"
    assert params["temporal/iter_0/model/tags/method"] == "temporal"
    ledger = json.loads(run.read_text("tracking.json"))["wandb"]["runs"]
    assert ledger["temporal"]["done"] and ledger["temporal/iter_0/model"]["done"]
    saved = {f.path for files in of_type(session, "files") for f in files.files}
    assert {"temporal/summary.json", "report/report.png", "report.png"} <= saved


def test_wandb_dir_is_honoured(offline, setup, monkeypatch, tmp_path):
    cfg, run = setup
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "elsewhere"))
    Tracker.open(with_wandb(cfg), run, "temporal").finish()
    assert len(sessions(tmp_path / "elsewhere" / "wandb")) == 1
    assert not (Path(run.root) / "wandb").exists()


def test_the_mode_follows_the_key_and_wandb_mode():
    assert resolve_mode("auto", {}) == "offline"
    assert resolve_mode("auto", {"WANDB_API_KEY": "k"}) == "online"
    assert resolve_mode("online", {"WANDB_API_KEY": "k", "WANDB_MODE": "offline"}) == "offline"
    assert resolve_mode("offline", {"WANDB_API_KEY": "k"}) == "offline"
    assert resolve_mode("auto", {"WANDB_MODE": "disabled"}) == "disabled"


def test_online_without_a_key_is_refused_before_anything_is_logged(setup, monkeypatch):
    cfg, run = setup
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    with pytest.raises(ConfigError, match="WANDB_API_KEY.*wandb sync"):
        Tracker.open(with_wandb(cfg, mlflow=True, mode="online"), run, "temporal")
    assert run.read_text("tracking.json") is None  # no MLflow run opened either


def test_wandb_off_writes_nothing(setup, run_stages):
    cfg, run = setup
    tracker = run_stages(cfg, run)
    assert all(type(r).__name__ != "WandbRun" for r in tracker.runs)
    assert not (Path(run.root) / "wandb").exists()


def test_step_axis():
    assert step_axis("iter_0/model/dpo/loss") == "iter_0/model/dpo/step"
    assert step_axis("iter_0/pairs/dropped.tie") == "iter_0/pairs/step"
    assert step_axis("loss") == "step"

