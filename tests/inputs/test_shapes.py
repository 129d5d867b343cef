"""temporal_ray.inputs.shapes: plain fields and chat messages give the same turns; a row that
fits neither is named with its field."""

from __future__ import annotations

import pytest

from temporal_ray.config import DataSource
from temporal_ray.core.prompts import PromptFileError
from temporal_ray.inputs.shapes import Turn, read_turn

PLAIN = DataSource(path="x.jsonl")
SYSTEM = {"role": "system", "content": "Be terse."}
USER = {"role": "user", "content": "Two plus two?"}
ASSISTANT = {"role": "assistant", "content": "Four."}


def turn(row: dict, source: DataSource = PLAIN, with_response: bool = True) -> Turn:
    return read_turn(row, source, "x.jsonl:3", with_response)


def test_plain_and_chat_rows_give_the_same_turn():
    expected = Turn(prompt="Two plus two?", system="Be terse.", response="Four.")
    assert turn({"prompt": "Two plus two?", "response": "Four.", "system": "Be terse."}) \
        == expected
    assert turn({"messages": [SYSTEM, USER, ASSISTANT]}) == expected
    # TRL's conversational prompt-completion rows.
    trl = DataSource(path="x.jsonl", response_field="completion")
    assert turn({"prompt": [SYSTEM, USER], "completion": [ASSISTANT]}, trl) == expected


def test_configured_field_names():
    source = DataSource(path="x", prompt_field="instruction", response_field="output",
                        system_field="sys", messages_field="conversation")
    assert turn({"instruction": "Q", "output": "A"}, source) == Turn("Q", "", "A")
    assert turn({"conversation": [USER, ASSISTANT]}, source) == Turn("Two plus two?", "",
                                                                     "Four.")


def test_a_prompt_may_carry_its_answer_which_is_left_out():
    assert turn({"messages": [USER, ASSISTANT]}, with_response=False) == \
        Turn("Two plus two?", "", None)
    assert turn({"messages": [SYSTEM, USER]}, with_response=False) == \
        Turn("Two plus two?", "Be terse.", None)


@pytest.mark.parametrize(("row", "with_response", "message"), [
    ({"messages": [USER, ASSISTANT, USER, ASSISTANT]}, True,
     r"x.jsonl:3: field 'messages' has roles \['user', 'assistant', 'user', 'assistant'\].*"
     "multi-turn"),
    ({"messages": [USER]}, True, r"x.jsonl:3: field 'messages' has roles \['user'\]"),
    ({"messages": [USER, {"role": "tool", "content": "x"}]}, False,
     r"x.jsonl:3: messages\[1\].role must be system, user or assistant, not 'tool'"),
    ({"messages": [{"role": "user", "content": ""}]}, False,
     r"x.jsonl:3: messages\[0\].content must be a non-empty string"),
    ({"messages": "hello"}, False, r"x.jsonl:3: field 'messages' must be a non-empty list"),
    ({"messages": [], "prompt": "x"}, False, r"field 'messages' must be a non-empty list"),
    ({"text": "hello"}, False, r"missing field 'prompt' \(or a 'messages' list"),
    ({"prompt": "Q", "system": 3}, False, r"field 'system' must be a string"),
    ({"prompt": [USER], "response": [USER]}, True,
     r"field 'response' must hold one assistant message"),
])
def test_rows_that_fit_no_shape_are_named(row, with_response, message):
    with pytest.raises(PromptFileError, match=message):
        turn(row, with_response=with_response)
