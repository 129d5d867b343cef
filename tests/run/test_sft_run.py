"""`temporal-ray sft` end to end: 2 real Ray Train workers, DeepSpeed ZeRO-3 over gloo, the
tiny model learns its SFT data (IFT as a Parquet file of chat messages with a system prompt,
EFT as a Hugging Face dataset saved to disk); every step is tracked in MLflow (read back with
its client); the rerun reuses the finished stages and logs no point twice; bad data stops it
before any training starts."""

from __future__ import annotations

import json
import logging

import pytest
import yaml

from temporal_ray.cli import main
from temporal_ray.config import load_config
from temporal_ray.run.sft import run_sft
from temporal_ray.storage.files import read_rows

pytestmark = pytest.mark.slow

IFT = [{"prompt": f"What is {i} plus {i}?", "response": f"It is {2 * i}."} for i in range(12)]
EFT = [{"prompt": f"Review the answer 'It is {i}.' and end with Score: k",
        "response": f"The answer is short and on topic. Score: {i % 6}"} for i in range(4)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def write_chat_parquet(path, rows, system):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"messages": [
        {"role": "system", "content": system}, {"role": "user", "content": r["prompt"]},
        {"role": "assistant", "content": r["response"]}]} for r in rows]), path)
    return str(path)


def write_saved_dataset(path, rows):
    import datasets

    datasets.Dataset.from_list(rows).save_to_disk(str(path))
    return str(path)


def test_sft_makes_m0_and_resumes(hub_cache, ray_cluster, tmp_path, capsys, caplog,
                                  monkeypatch):
    """The base model is named by its Hub id, read offline from a Hub cache (conftest's
    hub_cache): the driver resolves it, the workers train from the snapshot."""
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    overrides = [
        f"model.path={tmp_path / 'sft' / 'model'}", "data.prompts=unused.jsonl",
        "sft.base_model=tiny-org/tiny-model", f"storage.hub_cache={hub_cache}",
        f"sft.output={tmp_path / 'sft'}",
        f"sft.data=[{write_chat_parquet(tmp_path / 'ift.parquet', IFT, 'Be exact.')}, "
        f"{write_saved_dataset(tmp_path / 'eft', EFT)}]",
        "sft.lr=5e-3", "sft.min_lr=5e-4", "sft.warmup_ratio=0", "sft.epochs=3",
        "sft.batch_size=8", "sft.micro_batch_size=2", "sft.max_length=64",
        "sft.checkpoint_every=0"]
    cfg = load_config(None, overrides)
    model = run_sft(cfg)
    metrics = json.loads((tmp_path / "sft" / "model" / "metrics.json").read_text())
    assert metrics["examples"] == 16 and metrics["world_size"] == 2
    assert metrics["optimizer_steps"] == 16 // 8 * 3
    assert metrics["loss_after"] < 0.8 * metrics["loss_before"]
    # 16 examples over 2 ranks x 4, none repeated, 3 epochs: every response token 3 times.
    assert metrics["sft_backward_tokens"] == 3 * metrics["response_tokens"]
    assert 0 < metrics["sft_backward_tokens"] < metrics["sft_forward_tokens"]
    manifest = json.loads((tmp_path / "sft" / "data" / "manifest.json").read_text())
    assert manifest["per_file"] == {str(tmp_path / "ift.parquet"): 12,
                                    str(tmp_path / "eft"): 4}
    examples = read_rows(str(tmp_path / "sft" / "data" / "rows.parquet"))
    assert [r["system"] for r in examples] == ["Be exact."] * 12 + [""] * 4
    AutoModelForCausalLM.from_pretrained(model)  # a plain HF checkpoint
    # The saved config names the snapshot the run trained from, and so the Hub commit.
    saved = yaml.safe_load((tmp_path / "sft" / "config.yaml").read_text())["sft"]
    assert saved["base_model"].startswith(f"{hub_cache}/models--tiny-org--tiny-model/snapshots/")

    assert_sft_steps_tracked(tmp_path / "sft", metrics["history"])

    # The same command again: both stages are reused, nothing retrains nor is logged twice.
    capsys.readouterr()
    run_sft(cfg)
    assert "(reused)" in capsys.readouterr().out
    assert_sft_steps_tracked(tmp_path / "sft", metrics["history"])

    # A resume that changes only where the work runs goes on, says so, and reuses the stages.
    caplog.set_level(logging.INFO, logger="temporal_ray")
    run_sft(load_config(None, [*overrides, "sft.max_failures=5"]))
    assert "sft.max_failures 2 -> 5" in caplog.text and "(reused)" in capsys.readouterr().out


def assert_sft_steps_tracked(output, history):
    """The MLflow store in the SFT output holds one run, its `model` stage nested with every
    step of rank 0's history, each once."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"file://{output / 'mlruns'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "sft"]
    runs = client.search_runs([experiment.experiment_id])
    (root,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert root.data.params["sft.epochs"] == "3" and root.info.status == "FINISHED"
    (model,) = [r for r in runs if r.data.tags.get("stage") == "model"]
    assert model.data.tags["kind"] == "sft"
    for key in ("loss", "grad_norm", "lr", "tokens_per_s"):
        for run in (model, root):  # the stage's own curve, and the run-wide one
            points = client.get_metric_history(run.info.run_id, f"sft/{key}")
            assert [(p.step, p.value) for p in points] == [(h["step"], h[key]) for h in history]
    assert all(h["tokens"] > 0 and h["tokens_per_s"] > 0 for h in history)


def test_bad_sft_data_stops_before_training(tiny_model, tmp_path, capsys):
    bad = tmp_path / "ift.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "a"}\n', encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text("model: {path: m}\ndata: {prompts: p}\n", encoding="utf-8")
    code = main(["sft", str(config), f"sft.base_model={tiny_model}",
                 f"sft.output={tmp_path / 'sft'}", f"sft.data=[{bad}]"])
    assert code == 2
    assert f"{bad}:2: missing field 'response'" in capsys.readouterr().err
    assert not (tmp_path / "sft").exists()
