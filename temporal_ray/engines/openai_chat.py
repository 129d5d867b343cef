"""The OpenAI chat-completions protocol, both ways, for every engine that speaks it. Pure.

Client side, for stages that send our request rows to a server: `chat_body` turns a row
{messages, sampling_params} into a chat request, `engine_columns` reads a chat.completion back
into the columns every engine writes (generated_text, num_input_tokens, num_generated_tokens).
Used by the `http` engine.

Server side, for our own CPU servers of the HF engine: `chat_request_row` turns a chat request
into a request row (and names a field it cannot serve), `chat_completion` an engine output row
into a chat.completion. Used by `temporal-ray serve`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any


def chat_body(row: dict[str, Any], model: str) -> dict[str, Any]:
    """A request row -> a chat completions request for `model`, with the row's own sampling."""
    params = row["sampling_params"]
    return {
        "model": model,
        # Arrow hands nested lists back as numpy arrays of dicts: plain lists for JSON.
        "messages": [{"role": m["role"], "content": m["content"]} for m in row["messages"]],
        "temperature": float(params["temperature"]),
        "top_p": float(params["top_p"]),
        "max_tokens": int(params["max_tokens"]),
        "seed": int(params["seed"]),
        "n": 1,
    }


def engine_columns(reply: Any, what: str = "the endpoint's reply") -> dict[str, Any]:
    """A chat.completion -> generated_text, num_input_tokens, num_generated_tokens."""
    try:
        text = reply["choices"][0]["message"]["content"] or ""
    except (KeyError, IndexError, TypeError) as err:
        raise ValueError(f"{what} is not a chat completion ({err!r}): {str(reply)[:300]}"
                         ) from None
    usage = reply.get("usage") or {}
    # Without surrounding white space, as every engine writes it (a server's text may start
    # with the space its first token decodes to).
    return {"generated_text": text.strip(),
            "num_input_tokens": int(usage.get("prompt_tokens", 0)),
            "num_generated_tokens": int(usage.get("completion_tokens", 0))}


DEFAULT_MAX_TOKENS = 256


class RequestError(ValueError):
    """A chat request that the endpoint cannot serve; the message says which field."""


def chat_request_row(body: dict[str, Any], served_model: str) -> dict[str, Any]:
    """An OpenAI chat request body -> the engine's request row (core/requests.py)."""
    from temporal_ray.core.requests import derive_seed, sampling_params

    if body.get("model") not in (None, served_model):
        raise RequestError(f"model {body.get('model')!r} is not served here; "
                           f"this endpoint serves {served_model!r}")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and isinstance(m.get("content"), str) and m.get("role")
            for m in messages):
        raise RequestError("messages must be a non-empty list of {role, content} objects")
    if body.get("stream"):
        raise RequestError("stream=true is not supported by the CPU endpoint")
    if body.get("n", 1) != 1:
        raise RequestError("only n=1 is supported by the CPU endpoint")
    try:
        params = sampling_params(
            float(body.get("temperature", 1.0)), float(body.get("top_p", 1.0)),
            int(body.get("max_tokens") or DEFAULT_MAX_TOKENS),
            int(body["seed"]) if body.get("seed") is not None
            else derive_seed(uuid.uuid4().hex))
    except (TypeError, ValueError) as err:
        raise RequestError(f"temperature, top_p, max_tokens and seed must be numbers: {err}"
                           ) from err
    if params["max_tokens"] <= 0 or not 0 < params["top_p"] <= 1 or params["temperature"] < 0:
        raise RequestError("need max_tokens > 0, 0 < top_p <= 1 and temperature >= 0")
    return {"messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "sampling_params": params}


def chat_completion(output: dict[str, Any], served_model: str) -> dict[str, Any]:
    """An engine output row -> an OpenAI chat.completion object."""
    prompt_tokens = int(output["num_input_tokens"])
    completion_tokens = int(output["num_generated_tokens"])
    finished = completion_tokens < int(output["sampling_params"]["max_tokens"])
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": served_model,
        "choices": [{"index": 0, "finish_reason": "stop" if finished else "length",
                     "message": {"role": "assistant", "content": output["generated_text"]}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }
