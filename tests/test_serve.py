"""`temporal-ray serve` on CPU: request mapping by hand, then a real Ray Serve app on localhost
answering real HTTP requests with the tiny model, and a clean shutdown."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest

from temporal_ray.serve import RequestError, chat_completion, chat_request_row


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
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": "many"}, "numbers"),
    ({"messages": [{"role": "user", "content": "x"}], "top_p": 0}, "top_p"),
])
def test_bad_requests_name_the_field(body, message):
    with pytest.raises(RequestError, match=message):
        chat_request_row(body, "m")


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.slow
def test_cpu_endpoint_answers_chat_completions_over_http(tiny_model, ray_cluster):
    from ray import serve

    from temporal_ray.serve import serve_checkpoint

    port = _free_port()
    url = serve_checkpoint(tiny_model, name="tiny", port=port, blocking=False)
    try:
        status, models = _call(f"{url}/models")
        assert status == 200 and [m["id"] for m in models["data"]] == ["tiny"]
        body = {"model": "tiny", "max_tokens": 8, "temperature": 0, "seed": 1,
                "messages": [{"role": "user", "content": "What is two plus three?"}]}
        status, answer = _call(f"{url}/chat/completions", body)
        assert status == 200 and answer["object"] == "chat.completion"
        message = answer["choices"][0]["message"]
        assert message["role"] == "assistant" and isinstance(message["content"], str)
        assert 1 <= answer["usage"]["completion_tokens"] <= 8
        assert answer["usage"]["prompt_tokens"] > 5
        assert _call(f"{url}/chat/completions", body)[1]["choices"] == answer["choices"]  # greedy
        status, error = _call(f"{url}/chat/completions", {"messages": "hello"})
        assert status == 400 and "messages must be" in error["detail"]
    finally:
        serve.shutdown()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/models", timeout=5)
