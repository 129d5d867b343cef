"""The `http` engine: an OpenAI-compatible endpoint served elsewhere, through Ray Data LLM's own
HTTP processor (`ray.data.llm.HttpRequestProcessorConfig`, Ray 2.60).

Takes the same request rows as the other engines ({messages, sampling_params}) and returns the
same columns (generated_text, num_input_tokens, num_generated_tokens), so a judge served by
`temporal-ray serve`, a vLLM server or a hosted API plugs into any stage by config.
`chat_payload` builds the request body, `from_chat_completion` reads the reply (both pure,
on openai_chat.py's mapping).
The API key is read from the environment variable the config names, never from a config.
"""

from __future__ import annotations

import os
from typing import Any

from temporal_ray.config import EngineConfig
from temporal_ray.engines.openai_chat import chat_body, engine_columns

PAYLOAD = "payload"
RESPONSE = "http_response"


def chat_payload(row: dict[str, Any], model: str) -> dict[str, Any]:
    """Preprocess: a request row plus the chat completions body Ray's HTTP stage posts."""
    return {**row, PAYLOAD: chat_body(row, model)}


def from_chat_completion(row: dict[str, Any]) -> dict[str, Any]:
    """Postprocess: the endpoint's chat.completion object -> the engines' output columns."""
    out = {k: v for k, v in row.items() if k not in (PAYLOAD, RESPONSE)}
    out.update(engine_columns(row[RESPONSE]))
    return out


def request_headers(engine: EngineConfig) -> dict[str, str]:
    """The bearer token from the environment variable `engine.api_key_env` names."""
    if not engine.api_key_env:
        return {}
    key = os.environ.get(engine.api_key_env)
    if not key:
        raise ValueError(f"engine.api_key_env is {engine.api_key_env!r} but that environment "
                         "variable is not set: export it (or set it in the job's runtime env)")
    return {"Authorization": f"Bearer {key}"}


def build_http_processor(model: str, engine: EngineConfig):
    from ray.data.llm import HttpRequestProcessorConfig, build_processor

    config = HttpRequestProcessorConfig(
        url=engine.url, headers=request_headers(engine), qps=engine.qps,
        max_retries=engine.max_retries, concurrency=engine.pool_size,
        batch_size=engine.batch_size)
    return build_processor(config, preprocess=lambda row: chat_payload(row, model),
                           postprocess=from_chat_completion)
