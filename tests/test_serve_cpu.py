"""`temporal-ray serve` on CPU (serve_cpu.py): one real Ray Serve app on localhost with the tiny
model and an API key, shared by every test here (a Serve start costs tens of seconds), asked
over real HTTP; a clean shutdown at the end (the field checks alone:
engines/test_openai_chat.py)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

KEY = "test-key-1234"
GOOD = {"model": "tiny", "max_tokens": 8, "temperature": 0, "seed": 1,
        "messages": [{"role": "user", "content": "What is two plus three?"}]}


def _call(url: str, body: dict | bytes | None = None, key: str | None = KEY
          ) -> tuple[int, dict, dict]:
    """(status, JSON body, headers) of one request; `body` bytes are sent as they are."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)


@pytest.fixture(scope="module")
def server(tiny_model, ray_for_session_fixtures, free_port):
    """The base URL (…/v1) of the app, its key in TEMPORAL_RAY_TEST_KEY."""
    from ray import serve

    from temporal_ray.serve import serve_checkpoint

    with pytest.MonkeyPatch.context() as env:
        env.setenv("TEMPORAL_RAY_TEST_KEY", KEY)
        url = serve_checkpoint(tiny_model, name="tiny", port=free_port(), blocking=False,
                               api_key_env="TEMPORAL_RAY_TEST_KEY",
                               cpu_options={"batch_wait_timeout_s": 0.2})
    yield url
    serve.shutdown()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/models", timeout=5)


@pytest.mark.slow
def test_only_requests_with_the_key_are_answered(server):
    for key in (None, "wrong-key", KEY[:-1]):
        for status, error, _ in (_call(f"{server}/models", key=key),
                                 _call(f"{server}/chat/completions", GOOD, key=key)):
            assert status == 401 and error["error"]["code"] == "invalid_api_key"
            assert "Authorization: Bearer" in error["error"]["message"]
    status, models, _ = _call(f"{server}/models")
    assert status == 200 and [m["id"] for m in models["data"]] == ["tiny"]
    status, answer, _ = _call(f"{server}/chat/completions", GOOD)
    assert status == 200 and answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["role"] == "assistant"
    assert 1 <= answer["usage"]["completion_tokens"] <= 8
    assert answer["usage"]["prompt_tokens"] > 5


BAD = [  # (body, the field the 400 names or None, words of its message)
    (b'{"messages": [', None, "not valid JSON"),
    (b'[1, 2]', None, "JSON object"),
    ({**GOOD, "messages": []}, "messages", "non-empty list"),
    ({**GOOD, "messages": "hello"}, "messages", "non-empty list"),
    ({**GOOD, "messages": [{"role": "user", "content": 3}]}, "messages", "string"),
    ({**GOOD, "temperature": "hot"}, "temperature", "a number"),
    ({**GOOD, "top_p": 1.5}, "top_p", "<= 1"),
    ({**GOOD, "seed": 1.5}, "seed", "an integer"),
    ({**GOOD, "max_tokens": -1}, "max_tokens", ">= 1"),
    ({**GOOD, "max_tokens": 0}, "max_tokens", ">= 1"),
    ({**GOOD, "max_tokens": 2.5}, "max_tokens", "an integer"),
    ({**GOOD, "max_tokens": "8"}, "max_tokens", "an integer"),
    ({**GOOD, "max_tokens": 10**9}, "max_tokens", "<= 512"),  # the tiny model's context
]


@pytest.mark.slow
def test_bad_requests_get_a_400_naming_the_field_while_others_are_answered(server):
    """Each bad request is refused before it joins a batch; a good one from another client,
    sent just before them, is answered, and so is one after them."""
    with ThreadPoolExecutor(1) as other_client:
        good = other_client.submit(_call, f"{server}/chat/completions",
                                   {**GOOD, "max_tokens": 64})
        for body, param, words in BAD:
            status, error, _ = _call(f"{server}/chat/completions", body)
            assert status == 400, (body, error)
            assert error["error"]["param"] == param and words in error["error"]["message"]
        status, answer, _ = good.result()
    assert status == 200 and answer["usage"]["completion_tokens"] >= 1
    assert _call(f"{server}/chat/completions", GOOD)[0] == 200


PROMPTS = ["What is two plus three?", "Name a colour.", "Reverse the word: king",
           "Sort these digits: 3 1 2", "Hi", "Count to five, please, one number a line."]


@pytest.mark.slow
def test_a_batched_answer_is_the_one_asked_alone(server):
    """Greedy and seeded-sampled requests asked one at a time, then all at once (Serve
    gathers them into one engine call): the same texts."""
    bodies = [{**GOOD, "messages": [{"role": "user", "content": p}], "max_tokens": 12,
               **sampling} for p in PROMPTS
              for sampling in ({"temperature": 0}, {"temperature": 1.0, "seed": 7})]
    alone = [_call(f"{server}/chat/completions", body) for body in bodies]
    assert {headers["x-temporal-ray-batch-size"] for _, _, headers in alone} == {"1"}
    start = threading.Barrier(len(bodies))

    def together(body: dict) -> tuple[int, dict, dict]:
        start.wait()
        return _call(f"{server}/chat/completions", body)

    with ThreadPoolExecutor(len(bodies)) as clients:
        batched = list(clients.map(together, bodies))
    assert max(int(headers["x-temporal-ray-batch-size"]) for _, _, headers in batched) > 1
    assert [status for status, _, _ in batched] == [200] * len(bodies)
    assert [a["choices"] for _, a, _ in batched] == [a["choices"] for _, a, _ in alone]
