"""AlpacaEval's model_outputs.json rows from hand-made prompts and answers."""

from __future__ import annotations

import json

from temporal_ray.evaluate.alpaca_export import alpaca_json, alpaca_outputs


def test_rows_follow_the_prompts_and_carry_their_dataset():
    prompts = [{"prompt_id": "b", "prompt": "Name a colour.", "dataset": "helpful_base"},
               {"prompt_id": "a", "prompt": "Say {hi} in \u00e9."},
               {"prompt_id": "c", "prompt": "Unanswered."}]
    answers = {"a": {"response": "h\u00e9"}, "b": {"response": "Blue."}}
    rows = alpaca_outputs(prompts, answers, "run/m1")
    assert rows == [
        {"instruction": "Name a colour.", "output": "Blue.", "generator": "run/m1",
         "dataset": "helpful_base"},
        {"instruction": "Say {hi} in \u00e9.", "output": "h\u00e9", "generator": "run/m1"}]
    text = alpaca_json(rows)
    assert json.loads(text) == rows and "\u00e9" in text  # UTF-8 kept as it is
