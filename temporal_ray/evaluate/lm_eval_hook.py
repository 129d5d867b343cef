"""A hook to lm-evaluation-harness (GSM8K, ARC-Challenge, TruthfulQA, ...) for clusters where
`lm_eval` is installed and the task datasets are available offline.

Nothing is downloaded: HF_DATASETS_OFFLINE is set, so a task whose dataset is not in the local
Hugging Face cache fails fast and the report says which task and what to do. A machine without
`lm_eval` gets the same kind of message instead of results; the rest of the evaluation runs.
"""

from __future__ import annotations

import os
from typing import Any


class LmEvalUnavailable(RuntimeError):
    """lm-evaluation-harness or a task's dataset is not available here; the message says what
    to install or download."""


INSTALL_HINT = ("install it with `pip install lm_eval` (or `pip install 'temporal-ray[lm-eval]'`"
                ") on the cluster's image")
DATASET_HINT = ("the datasets must be in the local Hugging Face cache: on a machine with "
                "internet run `lm_eval --model hf --model_args pretrained=<any model> "
                "--tasks {tasks} --limit 1` (or `datasets.load_dataset` for each), then copy "
                "the cache to HF_DATASETS_CACHE on the cluster")


def missing() -> str | None:
    """Why lm-evaluation-harness cannot run here, or None when it is installed."""
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        return f"lm-evaluation-harness is not installed: {INSTALL_HINT}"
    return None


def numeric_metrics(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """lm_eval's `results` section, numbers only: {task: {"acc,none": 0.41, ...}}."""
    return {task: {name: float(value) for name, value in metrics.items()
                   if isinstance(value, int | float) and not isinstance(value, bool)}
            for task, metrics in results.items()}


def run_lm_eval(model_path: str, tasks: list[str], limit: int | None, use_gpu: bool,
                engine: str = "hf", include_path: str | None = None
                ) -> dict[str, dict[str, float]]:
    """Run `tasks` on one checkpoint with lm_eval's `simple_evaluate`; `include_path` adds a
    directory of task YAML files to lm_eval's own tasks."""
    reason = missing()
    if reason:
        raise LmEvalUnavailable(reason)
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import lm_eval
    from lm_eval.tasks import TaskManager

    model = "vllm" if engine == "vllm" else "hf"
    try:
        output = lm_eval.simple_evaluate(
            model=model, model_args=f"pretrained={model_path}", tasks=list(tasks),
            task_manager=TaskManager(include_path=include_path),
            limit=limit, batch_size="auto" if use_gpu else 1,
            device="cuda" if use_gpu else "cpu")
    except Exception as err:  # lm_eval raises many kinds for a missing dataset or task
        raise LmEvalUnavailable(
            f"lm-evaluation-harness could not run {', '.join(tasks)} on {model_path}: "
            f"{type(err).__name__}: {str(err)[:300]}. "
            + DATASET_HINT.format(tasks=",".join(tasks))) from None
    return numeric_metrics(output["results"])
