"""A model's held-out answers in AlpacaEval's `model_outputs.json` format. Pure.

In:  the evaluation's prompt rows (in order) and the model's held-out answer rows by prompt_id.
Out: a JSON list, one object per answered prompt in prompt order:
     {"instruction": the prompt, "output": the answer, "generator": the model's name}, plus
     "dataset" where the prompt row has one (AlpacaEval's own eval set does). `alpaca_eval
     --model_outputs <a checkpoint's file> --reference_outputs <the reference's file>` then
     judges them with AlpacaEval's own annotators; it matches the two sides by instruction.
"""

from __future__ import annotations

import json
from typing import Any

FILE = "model_outputs.json"


def alpaca_outputs(prompts: list[dict[str, Any]], answers: dict[str, dict[str, Any]],
                   generator: str) -> list[dict[str, Any]]:
    """The rows of the file, for the prompts that `answers` answers."""
    rows = []
    for prompt in prompts:
        answer = answers.get(prompt["prompt_id"])
        if answer is None:
            continue
        row = {"instruction": prompt["prompt"], "output": answer["response"],
               "generator": generator}
        if prompt.get("dataset") is not None:
            row["dataset"] = str(prompt["dataset"])
        rows.append(row)
    return rows


def alpaca_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
