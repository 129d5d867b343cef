"""The pairwise judge's prompt and its two requests per prompt, by hand."""

from __future__ import annotations

import pytest

from temporal_ray.evaluate.pairwise import (
    PAIRWISE_PROMPT,
    load_pairwise_template,
    pairwise_messages,
    verdict_requests,
)
from temporal_ray.evaluate.winrate import parse_verdict


def test_built_in_prompt_asks_for_a_parsable_verdict():
    assert load_pairwise_template(None) == PAIRWISE_PROMPT
    for verdict in ("first", "second", "tie"):
        assert f'"Winner: {verdict}"' in PAIRWISE_PROMPT
        assert parse_verdict(f"Both are fine.\nWinner: {verdict}") == verdict


def test_placeholders_are_filled_once_and_braces_survive():
    (message,) = pairwise_messages("Q={prompt} A={first} B={second}", "sum {x}",
                                   "{second} is {y}", "{}")
    assert message == {"role": "user", "content": "Q=sum {x} A={second} is {y} B={}"}


def test_custom_template_must_hold_every_placeholder(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("{prompt}\n{first}\n{second}\nWinner?")
    assert load_pairwise_template(str(good)).startswith("{prompt}")
    bad = tmp_path / "bad.txt"
    bad.write_text("{prompt} {first}")
    with pytest.raises(ValueError, match=r"bad.txt lacks \{second\}"):
        load_pairwise_template(str(bad))


def test_two_requests_swap_the_order_with_their_own_seeds():
    row = {"prompt_id": "p1", "prompt": "What is 2 + 2?", "answer": "4"}
    first, second = verdict_requests(row, "4", "five", "{prompt}|{first}|{second}",
                                     temperature=0.0, max_tokens=32, seed=7)
    assert (first["model_first"], second["model_first"]) == (True, False)
    assert first["prompt"] == second["prompt"] == row["prompt"]  # as every engine's rows
    assert first["messages"][0]["content"] == "What is 2 + 2?|4|five"
    assert second["messages"][0]["content"] == "What is 2 + 2?|five|4"
    assert first["sampling_params"]["max_tokens"] == 32
    assert first["sampling_params"]["seed"] != second["sampling_params"]["seed"]
    again = verdict_requests(row, "x", "y", "{prompt}{first}{second}", 0.0, 32, 7)
    assert [r["sampling_params"]["seed"] for r in again] == [
        first["sampling_params"]["seed"], second["sampling_params"]["seed"]]
