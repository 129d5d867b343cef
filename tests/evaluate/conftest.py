"""Fixtures of the evaluation tests."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def local_lm_eval_task(tmp_path) -> str:
    """A directory holding `toy_mc`, a 3-question multiple-choice lm-eval task over a local
    JSONL file (lm_eval's own tasks download their datasets; this machine has no internet)."""
    directory = tmp_path / "lm_eval_tasks"
    directory.mkdir()
    rows = [{"question": "What is 2 + 2?", "choices": ["3", "4", "5"], "label": 1},
            {"question": "What is 5 + 1?", "choices": ["6", "7", "8"], "label": 0},
            {"question": "Reverse the word: cat", "choices": ["act", "tac"], "label": 1}]
    (directory / "toy.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (directory / "toy_mc.yaml").write_text(f"""\
task: toy_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {directory}/toy.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{label}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
""")
    return str(directory)


@pytest.fixture
def evaluator_file():
    """A file of the evaluator's that a sandboxed program must not write: in the home
    directory, not under /tmp, which the sandbox replaces with its own (a clone under /tmp
    would be out of the program's sight, not refused)."""
    import uuid
    from pathlib import Path

    path = Path.home() / f".sandbox-target-{uuid.uuid4().hex}.json"
    path.write_text("the evaluator's results")
    yield path
    path.unlink(missing_ok=True)
