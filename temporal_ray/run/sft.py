"""`temporal-ray sft`: make M0 = SFT(base model, IFT + EFT), as resumable stages.

    <sft.output>/data/   the checked examples (rows.parquet)
    <sft.output>/model/  M0: point model.path here for `temporal-ray run`

Both are written through a temporary directory and published with a manifest, like every stage
of the loop, so a rerun of the same command skips what is finished and a crash loses nothing.
"""

from __future__ import annotations

from typing import Any

from temporal_ray.config import Config, ConfigError, results_hash
from temporal_ray.engines.preflight import check_model
from temporal_ray.inputs.load import load_sft_rows
from temporal_ray.stages.sft import train_sft
from temporal_ray.storage.files import write_rows
from temporal_ray.storage.lock import RunLock
from temporal_ray.storage.run_dir import RunDir
from temporal_ray.terminal import echo
from temporal_ray.tracking import Tracker
from temporal_ray.training.plan import check_fits


def run_sft(cfg: Config, force: bool = False, parent: Tracker | None = None) -> str:
    """Run (or resume) SFT; returns the URI of the trained model directory. Tracked as a run
    of its own, or nested in `parent`'s."""
    from temporal_ray.run.session import (
        absolute,
        absolute_source,
        check_config,
        model_dir,
        start_ray,
    )
    from temporal_ray.storage.hub import hub_id

    sft = cfg.sft
    if not sft.base_model:
        raise ConfigError("sft.base_model is not set: the model to fine-tune into M0")
    rows = load_sft_rows([absolute_source(s) for s in sft.data])  # bad rows stop us here
    base, output = model_dir(sft.base_model, cfg, "sft.base_model"), absolute(sft.output)
    if hub_id(sft.base_model):  # the saved config names the snapshot, and so its commit
        cfg = cfg.model_copy(update={"sft": sft.model_copy(update={"base_model": base})})
    check_model(base, "sft.base_model")
    check_fits(cfg, "sft")
    run = RunDir(output)
    with RunLock(run):
        check_config(run, cfg, force, sections=("sft",))
        tracker = (parent.child("sft", {"kind": "sft"}) if parent
                   else Tracker.open(cfg, run, "sft", {"kind": "sft"}))
        tracker.log_config(cfg)
        start_ray(cfg)

        def write_data(tmp: str) -> dict[str, Any]:
            write_rows(rows, f"{tmp}/rows.parquet")
            sources = {}
            for row in rows:
                sources[row["source"]] = sources.get(row["source"], 0) + 1
            return {"examples": len(rows), "per_file": sources}

        data = run.run_stage("data", write_data, kind="sft_data")
        tracker.log_stage("data", data.manifest, data.path)

        def train(tmp: str) -> dict[str, Any]:
            metrics = train_sft(f"{data.path}/rows.parquet", base, tmp, sft,
                                storage_path=run.uri_of(run.path("ray_train")),
                                name=f"sft_{results_hash(sft)}")
            return {k: v for k, v in metrics.items() if k != "history"}

        model = run.run_stage("model", train, kind="sft", base_model=base)
        tracker.log_stage("model", model.manifest, model.path)
        tracker.finish()
        m = model.manifest
        echo(f"sft: {m['examples']} examples, {m['optimizer_steps']} steps, response-token "
             f"loss {m['loss_before']:.4f} -> {m['loss_after']:.4f}  {m['seconds']:.1f} s"
             f"{' (reused)' if model.reused else ''}")
        echo(f"M0: {model.path}  (set model.path to it)")
        return model.path

