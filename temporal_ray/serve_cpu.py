"""The CPU app of `temporal-ray serve` (`--engine hf`): a Ray Serve deployment over the same
HF engine the generation pools use, with the OpenAI routes GET /v1/models and
POST /v1/chat/completions (messages, temperature, top_p, max_tokens, seed; no streaming,
n = 1).

Concurrent requests are gathered by Serve's `@serve.batch` into one engine call over a
multi-row DataFrame: on a few cores, one `generate` over 16 rows costs little more than over
one, where 16 `generate` calls in the replica's threads fight over the cores. Each row keeps
its own sampling settings and seed (engines/hf.py samples every row with its own generator).

Every request is checked before it joins a batch: the API key (401), the JSON and each field
(400 with an OpenAI-style error naming the field), so a bad request never fails the batch of
others. The engine runs in a worker thread, so the replica's event loop goes on taking and
checking requests while a batch generates.
"""

# No `from __future__ import annotations`: Serve rewrites the routes' signatures, and FastAPI
# must see the real `Request` class, not the string "Request".
import asyncio
import hashlib
import hmac
import json
from typing import Any

from temporal_ray.engines.openai_chat import RequestError, chat_completion, chat_request_row

BATCH_HEADER = "x-temporal-ray-batch-size"
"""Response header: how many requests shared this answer's engine call."""


def key_digest(key: str) -> bytes:
    """What the replica keeps of the API key: its SHA-256, never the key itself."""
    return hashlib.sha256(key.encode()).digest()


def error_response(status: int, message: str, param: str | None = None,
                   code: str | None = None) -> Any:
    """An OpenAI-style error body."""
    from fastapi.responses import JSONResponse

    kind = "authentication_error" if status == 401 else "invalid_request_error"
    return JSONResponse(status_code=status, content={
        "error": {"message": message, "type": kind, "param": param, "code": code}})


def unauthorized(headers: Any, digest: bytes | None) -> Any | None:
    """A 401 response unless the request carries the key (`Authorization: Bearer <key>`);
    None when it does or no key is set."""
    if digest is None:
        return None
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(key_digest(token.strip()), digest):
        return None
    return error_response(401, "missing or wrong API key: send the header "
                               "'Authorization: Bearer <key>' with the key of the server's "
                               "--api-key-env variable", code="invalid_api_key")


async def request_row(request: Any, served_model: str, max_context: int | None
                      ) -> dict[str, Any]:
    """The request's JSON body -> an engine row; RequestError (a 400) when it is not one."""
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as err:
        raise RequestError(f"the request body is not valid JSON: {err}") from None
    return chat_request_row(body, served_model, max_context)


def build_cpu_app(checkpoint: str, served_model: str, num_cpus: float = 1,
                  api_key_digest: bytes | None = None, max_batch_size: int = 16,
                  batch_wait_timeout_s: float = 0.05, torch_threads: int | None = None):
    """The Serve application over the HF engine (one replica)."""
    import pandas as pd
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from ray import serve

    api = FastAPI(title=f"temporal-ray: {served_model}")

    # Enough requests in the replica to fill a batch while the previous one generates.
    @serve.deployment(ray_actor_options={"num_cpus": num_cpus},
                      max_ongoing_requests=4 * max_batch_size)
    @serve.ingress(api)
    class ChatModel:
        def __init__(self) -> None:
            import torch

            from temporal_ray.engines.hf import HFEngine

            if torch_threads:
                torch.set_num_threads(torch_threads)
            self.engine = HFEngine(checkpoint)
            self.max_context = getattr(self.engine.model.config, "max_position_embeddings",
                                       None)

        @api.get("/v1/models")
        async def models(self, request: Request) -> Any:
            if (denied := unauthorized(request.headers, api_key_digest)) is not None:
                return denied
            return {"object": "list", "data": [{"id": served_model, "object": "model",
                                                "owned_by": "temporal-ray", "root": checkpoint}]}

        @api.post("/v1/chat/completions")
        async def chat(self, request: Request) -> Any:
            if (denied := unauthorized(request.headers, api_key_digest)) is not None:
                return denied
            try:
                row = await request_row(request, served_model, self.max_context)
            except RequestError as err:
                return error_response(400, str(err), err.param)
            output, shared = await self.generate(row)
            return JSONResponse(chat_completion(output, served_model),
                                headers={BATCH_HEADER: str(shared)})

        @serve.batch(max_batch_size=max_batch_size, batch_wait_timeout_s=batch_wait_timeout_s)
        async def generate(self, rows: list[dict[str, Any]]) -> list[tuple[dict, int]]:
            outputs = await asyncio.to_thread(self.engine, pd.DataFrame(rows))
            return [(output, len(rows)) for output in outputs.to_dict("records")]

    return ChatModel.bind()
