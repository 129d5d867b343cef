"""Small inputs in the datasets' published formats: Open Assistant's one row per message,
UltraFeedback's one row per instruction with four annotated completions."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest


def _message(message_id: str, parent_id: str | None, text: str, role: str, *, rank=None,
            lang: str = "en", deleted: bool = False, review_result: bool | None = True,
            synthetic: bool = False, tree: str = "t") -> dict:
    return {"message_id": message_id, "parent_id": parent_id, "user_id": "u",
            "created_date": "2023-02-05T10:00:00+00:00", "text": text, "role": role,
            "lang": lang, "review_count": 3, "review_result": review_result,
            "deleted": deleted, "rank": rank, "synthetic": synthetic, "model_name": None,
            "message_tree_id": tree, "tree_state": "ready_for_export"}


def _oasst_messages() -> list[dict]:
    """Six trees: two usable, each other one dropped for a reason of its own."""
    return [
        _message("a", None, "How do I boil an egg?", "prompter", tree="a"),
        _message("a1", "a", "Boil it for ten minutes.", "assistant", rank=1, tree="a"),
        _message("a2", "a", "Put it in boiling water for 7-9 minutes.", "assistant", rank=0,
                tree="a"),
        _message("a3", "a2", "And a soft one?", "prompter", tree="a"),     # a later turn
        _message("b", None, "Name a prime number.", "prompter", tree="b"),
        _message("b1", "b", "7 is prime.", "assistant", rank=None, tree="b"),
        _message("b2", "b", "Two.", "assistant", rank=0, synthetic=True, tree="b"),
        _message("c", None, "¿Qué hora es?", "prompter", lang="es", tree="c"),
        _message("c1", "c", "No lo sé.", "assistant", rank=0, lang="es", tree="c"),
        _message("d", None, "Write spam for me.", "prompter", review_result=False, tree="d"),
        _message("e", None, "Tell me a joke.", "prompter", tree="e"),
        _message("e1", "e", "Knock knock.", "assistant", rank=0, deleted=True, tree="e"),
        _message("f", None, "how do I  boil an egg?", "prompter", tree="f"),  # a duplicate
        _message("f1", "f", "Boil it.", "assistant", rank=0, tree="f"),
    ]


def _completion(response: str, ratings: tuple, rationale: str = "The text is fine.") -> dict:
    """One UltraFeedback completion; ratings: instruction_following, honesty, truthfulness,
    helpfulness, each 1..5 or "N/A"."""
    follow, honest, true, helpful = (str(r) for r in ratings)
    valid = [int(r) for r in ratings if r != "N/A"]
    return {"model": "gpt-4", "principle": "helpfulness",
            "custom_system_prompt": "Be helpful.", "response": response,
            "annotations": {
                "instruction_following": {"Rating": follow, "Rationale": rationale},
                "honesty": {"Rating": honest, "Rationale": "It is confident and correct."},
                "truthfulness": {"Type": ["0"], "Rationale": "No hallucination.",
                                 "Rating": true, "Rationale For Rating": "It is truthful."},
                "helpfulness": {"Type": ["1", "2"], "Rationale": "Clear and relevant.",
                                "Rating": helpful, "Rationale For Rating": "It helps."}},
            "fine-grained_score": sum(valid) / len(valid) if valid else None,
            "overall_score": 7.0, "critique": "Your answer could be more specific."}


# Their rubric scores are 0..5: an instruction-following 1 is 0, else the mean rounded.
RATINGS = [(1, 2, 2, 2), (2, 1, 1, 1), (2, 2, 2, 2), (3, 3, 3, 3), (4, 4, 4, 4), (5, 5, 5, 5)]


def _ultrafeedback_rows(n: int) -> list[dict]:
    """n instructions; instruction i's four completions are rated so every score 0..5 occurs."""
    rows = []
    for i in range(n):
        completions = [_completion(f"Answer {j} to question {i}.", RATINGS[(i + j) % 6])
                       for j in range(4)]
        rows.append({"source": "sharegpt" if i % 2 else "flan_v2_niv2",
                     "instruction": f"Question number {i}: explain something.",
                     "models": ["gpt-4"] * 4, "correct_answers": ["None"],
                     "incorrect_answers": ["None"], "completions": completions})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.fixture
def datasets(tmp_path) -> dict[str, Path]:
    """Both datasets as the Hub ships them: oasst1's Parquet split files, UltraFeedback's
    JSONL files (one per source), each in a directory with the Hub's other files."""
    oasst = tmp_path / "oasst1"
    messages = _oasst_messages()
    write_parquet(oasst / "data" / "train-00000-of-00001.parquet", messages[:7])
    write_parquet(oasst / "data" / "validation-00000-of-00001.parquet", messages[7:])
    (oasst / "README.md").write_text("# oasst1\n", encoding="utf-8")
    uf = tmp_path / "ultrafeedback"
    rows = _ultrafeedback_rows(120)
    write_jsonl(uf / "flan.jsonl", rows[:60])
    write_jsonl(uf / "sharegpt.jsonl", rows[60:])
    (uf / ".cache" / "huggingface").mkdir(parents=True)
    (uf / ".cache" / "huggingface" / "x.jsonl").write_text("not json\n", encoding="utf-8")
    return {"oasst": oasst, "ultrafeedback": uf}


@pytest.fixture
def oasst_messages() -> list[dict]:
    return _oasst_messages()


@pytest.fixture
def message():
    return _message


@pytest.fixture
def completion():
    return _completion


@pytest.fixture
def ultrafeedback_rows():
    return _ultrafeedback_rows


@pytest.fixture
def parquet_file():
    return write_parquet
