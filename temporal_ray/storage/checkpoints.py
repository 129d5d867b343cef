"""The layout of a checkpoint of ours: a Hugging Face model directory, and with LoRA an
`adapter/` inside it whose `adapter_config.json` names the base model it applies to
(training/export.py writes it; generation pools and the DPO stage read it back here)."""

from __future__ import annotations

import json

import pyarrow.fs as pafs

from temporal_ray.storage.files import resolve

ADAPTER_DIR = "adapter"


def adapter_of(model_dir: str) -> tuple[str, str] | None:
    """(base model, adapter directory) when `model_dir` is a LoRA checkpoint of ours, else
    None. Works for local paths and storage URIs alike."""
    adapter_dir = f"{model_dir.rstrip('/')}/{ADAPTER_DIR}"
    fs, config_path = resolve(f"{adapter_dir}/adapter_config.json")
    if fs.get_file_info(config_path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(config_path) as f:
        base = json.loads(f.read()).get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{adapter_dir}/adapter_config.json names no base_model_name_or_path: "
                         "the adapter cannot be applied without its base model")
    return base, adapter_dir
