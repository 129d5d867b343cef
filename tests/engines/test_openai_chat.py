"""The OpenAI chat mapping both ways (engines/openai_chat.py): pure."""

from __future__ import annotations

import pytest

from temporal_ray.engines.openai_chat import (
    RequestError,
    chat_body,
    chat_completion,
    chat_request_row,
    engine_columns,
)


def test_a_request_row_and_its_reply_round_trip_through_our_own_server_mapping():
    row = {"messages": [{"role": "user", "content": "Hi"}],
           "sampling_params": {"temperature": 0.5, "top_p": 0.9, "max_tokens": 6, "seed": 11}}
    body = chat_body(row, "m")
    assert body == {"model": "m", "messages": [{"role": "user", "content": "Hi"}],
                    "temperature": 0.5, "top_p": 0.9, "max_tokens": 6, "seed": 11, "n": 1}
    assert chat_request_row(body, "m") == row  # what our server makes of it is the row
    reply = chat_completion({**row, "generated_text": "Hello", "num_input_tokens": 4,
                             "num_generated_tokens": 2}, "m")
    assert engine_columns(reply) == {"generated_text": "Hello", "num_input_tokens": 4,
                                     "num_generated_tokens": 2}
    with pytest.raises(ValueError, match="the endpoint's reply is not a chat completion"):
        engine_columns({"error": "model not found"})


def test_chat_request_row_maps_the_openai_fields():
    row = chat_request_row({"model": "m", "messages": [{"role": "user", "content": "Hi"}],
                            "temperature": 0, "top_p": 0.5, "max_tokens": 7, "seed": 3}, "m")
    assert row == {"messages": [{"role": "user", "content": "Hi"}],
                   "sampling_params": {"temperature": 0.0, "top_p": 0.5, "max_tokens": 7,
                                       "seed": 3}}
    unseeded = chat_request_row({"messages": [{"role": "user", "content": "Hi"}]}, "m")
    assert unseeded["sampling_params"]["max_tokens"] == 256  # the default when none is given


@pytest.mark.parametrize(("body", "message"), [
    ({"model": "other", "messages": [{"role": "user", "content": "x"}]}, "not served here"),
    ({"messages": []}, "messages must be"),
    ({"messages": [{"role": "user"}]}, "messages must be"),
    ({"messages": [{"role": "user", "content": "x"}], "stream": True}, "stream"),
    ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "n=1"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": "many"},
     "max_tokens must be an integer"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": True}, "an integer"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, r"max_tokens must be >= 1"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 513}, "<= 512, got 513"),
    ({"messages": [{"role": "user", "content": "x"}], "top_p": 0}, "top_p must be > 0"),
    ({"messages": [{"role": "user", "content": "x"}], "temperature": float("nan")}, "finite"),
    ({"messages": [{"role": "user", "content": "x"}], "temperature": -1}, "temperature"),
    ({"messages": [{"role": "user", "content": "x"}], "seed": "7"}, "seed must be an integer"),
    ([{"role": "user", "content": "x"}], "must be a JSON object"),
])
def test_bad_requests_name_the_field(body, message):
    with pytest.raises(RequestError, match=message) as refused:
        chat_request_row(body, "m", max_context=512)
    field = message.split()[0]
    if field in ("max_tokens", "top_p", "temperature", "seed"):
        assert refused.value.param == field


def test_max_tokens_defaults_to_at_most_the_context():
    row = chat_request_row({"messages": [{"role": "user", "content": "Hi"}],
                            "max_tokens": None}, "m", max_context=100)
    assert row["sampling_params"]["max_tokens"] == 100


def test_chat_completion_shape_and_finish_reason():
    output = {"generated_text": "Paris", "num_input_tokens": 12, "num_generated_tokens": 2,
              "sampling_params": {"max_tokens": 8}}
    done = chat_completion(output, "m")
    assert done["object"] == "chat.completion" and done["model"] == "m"
    assert done["choices"] == [{"index": 0, "finish_reason": "stop",
                                "message": {"role": "assistant", "content": "Paris"}}]
    assert done["usage"] == {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}
    cut = chat_completion({**output, "num_generated_tokens": 8}, "m")
    assert cut["choices"][0]["finish_reason"] == "length"
