"""The `http` engine's request body and reply mapping by hand, and its API key handling."""

from __future__ import annotations

import numpy as np
import pytest

from temporal_ray.config import ConfigError, EngineConfig, load_config
from temporal_ray.engines.http import chat_payload, from_chat_completion, request_headers


def test_payload_is_a_chat_completions_body():
    row = {"prompt_id": "p", "messages": np.array([{"role": "user", "content": "Hi"}]),
           "sampling_params": {"temperature": np.float64(0.5), "top_p": 0.9,
                               "max_tokens": np.int64(7), "seed": 3}}
    out = chat_payload(row, "judge-70b")
    assert out["prompt_id"] == "p"
    assert out["payload"] == {"model": "judge-70b", "messages": [{"role": "user",
                                                                   "content": "Hi"}],
                              "temperature": 0.5, "top_p": 0.9, "max_tokens": 7, "seed": 3,
                              "n": 1}
    assert type(out["payload"]["max_tokens"]) is int


def test_reply_becomes_the_engine_columns():
    row = {"prompt_id": "p", "payload": {}, "http_response": {
        "choices": [{"message": {"role": "assistant", "content": "Winner: first"}}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 3}}}
    assert from_chat_completion(row) == {"prompt_id": "p", "generated_text": "Winner: first",
                                         "num_input_tokens": 40, "num_generated_tokens": 3}
    with pytest.raises(ValueError, match="not a chat completion"):
        from_chat_completion({"http_response": {"error": "model not found"}})


def test_api_key_comes_from_the_named_env_var(monkeypatch):
    engine = EngineConfig(kind="http", url="http://x/v1/chat/completions",
                          api_key_env="JUDGE_KEY")
    monkeypatch.delenv("JUDGE_KEY", raising=False)
    with pytest.raises(ValueError, match="JUDGE_KEY.*not set"):
        request_headers(engine)
    monkeypatch.setenv("JUDGE_KEY", "s3cret")
    assert request_headers(engine) == {"Authorization": "Bearer s3cret"}
    assert request_headers(engine.model_copy(update={"api_key_env": None})) == {}


def test_http_engine_needs_a_url():
    with pytest.raises(ConfigError, match="engine.*needs url"):
        load_config(None, ["model.path=m", "data.prompts=p", "engine.kind=http"])


@pytest.mark.slow
def test_endpoint_as_engine_gives_the_hf_pools_answers(tiny_model, ray_cluster, free_port):
    """`temporal-ray serve` on localhost as the engine of a Ray Data pass (Ray's own HTTP
    processor, real HTTP): the same greedy and seeded-sampled texts as the HF actor pool."""
    import ray.data
    from ray import serve

    from temporal_ray.core.requests import candidate_requests
    from temporal_ray.engines.pool import EnginePool, run_engine_pool
    from temporal_ray.serve import serve_checkpoint

    prompts = [{"prompt_id": f"p{i}", "prompt": text} for i, text in enumerate(
        ["What is two plus three?", "Name a colour.", "Reverse the word: king"])]
    requests = [r for p in prompts for r in
                candidate_requests(p, "present", 1, 0.0, 1.0, 8, seed=0)
                + candidate_requests(p, "future", 2, 1.0, 0.9, 8, seed=0)]
    columns = ["prompt_id", "role", "sample_index", "generated_text", "num_generated_tokens"]

    def answers(model: str, engine: EngineConfig) -> list[dict]:
        rows = run_engine_pool(ray.data.from_items(requests), model, EnginePool(engine))
        return sorted(rows.select_columns(columns).take_all(),
                      key=lambda r: (r["prompt_id"], r["role"], r["sample_index"]))

    # The local pool answers in batches of one: padding in a batch may move a near-tie of the
    # random model's logits. (The endpoint batches concurrent requests; test_serve_cpu.py
    # checks its batched answers against answers asked alone.)
    local = answers(tiny_model, EngineConfig(kind="hf", actors=1, batch_size=1))
    url = serve_checkpoint(tiny_model, name="tiny", port=free_port(), blocking=False)
    try:
        remote = answers("tiny", EngineConfig(kind="http", url=f"{url}/chat/completions",
                                              actors=1, batch_size=4))
    finally:
        serve.shutdown()
    assert len(remote) == len(requests) == 9
    assert remote == local
    assert any(r["generated_text"] for r in remote)
