"""The short tiny run that the tests driving real `temporal-ray run` processes share: its
prompts come as a Parquet file of chat messages, half of them with a system prompt."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
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
