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

import math
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
SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.Generator.manual_seed takes


class RequestError(ValueError):
    """A chat request that the endpoint cannot serve; the message says which field (`param`)."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


def chat_request_row(body: Any, served_model: str,
                     max_context: int | None = None) -> dict[str, Any]:
    """An OpenAI chat request body -> the engine's request row (core/requests.py).
    `max_context`: the model's context length, the most max_tokens may ask for."""
    from temporal_ray.core.requests import derive_seed, sampling_params

    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    if body.get("model") not in (None, served_model):
        raise RequestError(f"model {body.get('model')!r} is not served here; "
                           f"this endpoint serves {served_model!r}", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and isinstance(m.get("content"), str)
            and isinstance(m.get("role"), str) and m["role"] for m in messages):
        raise RequestError("messages must be a non-empty list of {role, content} objects "
                           "with string role and content", "messages")
    if body.get("stream"):
        raise RequestError("stream=true is not supported by the CPU endpoint", "stream")
    if body.get("n", 1) not in (1, None):
        raise RequestError("only n=1 is supported by the CPU endpoint", "n")
    limit = max_context or 2**31
    max_tokens = _number(body, "max_tokens", min(DEFAULT_MAX_TOKENS, limit), (1, limit),
                         integer=True)
    seed = _number(body, "seed", None, SEED_RANGE, integer=True)
    params = sampling_params(
        _number(body, "temperature", 1.0, (0, None)),
        _number(body, "top_p", 1.0, (0, 1), open_low=True), max_tokens,
        derive_seed(uuid.uuid4().hex) if seed is None else seed)
    return {"messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "sampling_params": params}


def _number(body: dict[str, Any], field: str, default: Any, bounds: tuple[Any, Any],
            integer: bool = False, open_low: bool = False) -> Any:
    """body[field] checked against its type and bounds; `default` when absent or null."""
    value = body.get(field)
    if value is None:
        return default
    kind = "an integer" if integer else "a number"
    # bool is an int to Python, never to a client.
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise RequestError(f"{field} must be {kind}, got {value!r}", field)
    if not math.isfinite(value):  # Python's JSON reads NaN and Infinity
        raise RequestError(f"{field} must be a finite number, got {value!r}", field)
    low, high = bounds
    if (low is not None and (value <= low if open_low else value < low)) or (
            high is not None and value > high):
        lower = f"> {low}" if open_low else f">= {low}"
        upper = "" if high is None else f" and <= {high}"
        raise RequestError(f"{field} must be {lower}{upper}, got {value!r}", field)
    return value


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
