"""`temporal-ray serve` on CPU: a real Ray Serve app on localhost answering real HTTP requests
with the tiny model, and a clean shutdown (the request mapping: engines/test_openai_chat.py)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest


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


def test_serve_running_without_http_proxies_is_named_instead_of_serving_nowhere(tiny_model,
                                                                               ray_cluster):
    """What a killed run's kept vLLM pool can leave behind: Serve without HTTP proxies."""
    from ray import serve

    from temporal_ray.serve import serve_checkpoint

    serve.start(proxy_location="Disabled")
    try:
        with pytest.raises(RuntimeError, match="without HTTP proxies.*`serve shutdown`"):
            serve_checkpoint(tiny_model, name="tiny", port=_free_port(), blocking=False)
    finally:
        serve.shutdown()
