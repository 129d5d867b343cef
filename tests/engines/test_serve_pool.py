"""Kept Serve pools (serve_pool.py): the request and reply mapping, the Serve LLM config, and
the whole path (a real Serve application called through Ray Data LLM's serve-deployment
processor) with the CPU engine on a real local cluster."""

from __future__ import annotations

import time

import pytest

from temporal_ray.config import EngineConfig, GenerationConfig
from temporal_ray.core.requests import candidate_requests
from temporal_ray.engines.kept_pool import KeptPools, pool_name
from temporal_ray.engines.pool import check_servable
from temporal_ray.engines.vllm import serve_llm_config

REQUEST = candidate_requests({"prompt_id": "p0", "prompt": "Name a fruit."}, "present", 1,
                             0.7, 0.9, 12, 5)[0]


def serve_is_running() -> bool:
    """Without starting Serve, as `serve.status()` would."""
    import ray

    return any(actor["name"] == "SERVE_CONTROLLER_ACTOR"
               for actor in ray.util.list_named_actors(all_namespaces=True))


def test_a_request_row_becomes_a_chat_request_with_its_own_sampling():
    from temporal_ray.engines.serve_pool import chat_request

    row = chat_request(REQUEST, served_model="pool-a", dtype="ChatCompletionRequest")
    assert row["method"] == "chat" and row["dtype"] == "ChatCompletionRequest"
    assert row["request_kwargs"] == {
        "model": "pool-a", "messages": [{"role": "user", "content": "Name a fruit."}],
        "max_tokens": 12, "temperature": 0.7, "top_p": 0.9,
        "seed": REQUEST["sampling_params"]["seed"], "n": 1, "stream": False}
    assert {k: row[k] for k in REQUEST} == REQUEST  # the row's own columns ride along
    # vLLM's request model takes it as Ray Data hands it over (messages as an array, the
    # processor's request_id and idx_in_batch added), where the gpu extra is installed.
    try:
        from ray.serve.llm.openai_api_models import ChatCompletionRequest
    except ImportError:
        return
    import numpy as np

    request = ChatCompletionRequest(request_id="0", idx_in_batch=0, **{
        **row["request_kwargs"], "messages": np.array(row["request_kwargs"]["messages"])})
    assert request.messages == [{"role": "user", "content": "Name a fruit."}]
    assert (request.seed, request.max_tokens, request.n) == (REQUEST["sampling_params"]["seed"],
                                                              12, 1)


def test_the_reply_fills_the_engine_columns_and_keeps_only_the_rows_own():
    from temporal_ray.engines.serve_pool import chat_request, from_chat_response

    row = chat_request(REQUEST, served_model="pool-a", dtype=None)
    row.update(id="chatcmpl-1", model="pool-a", request_id="7", time_taken=0.1,
               choices=[{"index": 0, "message": {"role": "assistant", "content": "A pear."},
                         "finish_reason": "stop"}],
               usage={"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12})
    out = from_chat_response(row)
    assert out == {**REQUEST, "generated_text": "A pear.", "num_input_tokens": 9,
                   "num_generated_tokens": 3}
    row.pop("choices")
    row["error"] = {"message": "prompt too long", "code": 400}
    with pytest.raises(ValueError,
                       match="reply to request 7 is not a chat completion.*prompt too long"):
        from_chat_response(row)


def test_serve_llm_config_carries_the_pool_settings():
    engine = EngineConfig(kind="vllm", keep_alive=True, actors=2, max_actors=4,
                          tensor_parallel_size=2, pipeline_parallel_size=2, max_model_len=4096,
                          resources={"gen_node": 0.01}, gpus_per_actor=4)
    config = serve_llm_config("/ckpt/m1", engine, "kept-pool-x")
    assert config["model_loading_config"] == {"model_id": "kept-pool-x",
                                              "model_source": "/ckpt/m1"}
    assert config["engine_kwargs"] == {"tensor_parallel_size": 2, "pipeline_parallel_size": 2,
                                       "max_model_len": 4096, "enable_prefix_caching": True,
                                       "dtype": "auto", "enforce_eager": False}
    assert config["deployment_config"]["autoscaling_config"] == {"min_replicas": 2,
                                                                 "max_replicas": 4}
    # One GPU bundle per vLLM worker: tensor x pipeline of them.
    assert config["placement_group_config"]["bundles"] == [{"GPU": 1, "gen_node": 0.01}] * 4
    # Ray Serve LLM itself accepts it where the gpu extra is installed.
    try:
        from ray.serve.llm import LLMConfig
    except ImportError:
        return
    assert LLMConfig(**config).model_loading_config.model_id == "kept-pool-x"


def test_a_kept_vllm_pool_refuses_adapters_it_could_not_load():
    engine = EngineConfig(kind="vllm", keep_alive=True)
    with pytest.raises(ValueError, match="Serve LLM loads adapters only from s3://"):
        check_servable({"past": "/run/m0", "present": "/run/iter_0/model/adapter"}, "/run/m0",
                       engine)
    check_servable({"past": "/run/m0"}, "/run/m0", engine)  # the base alone is fine


@pytest.mark.slow
def test_a_kept_serve_pool_serves_two_stages_through_ray_data(tiny_model, ray_cluster,
                                                              engine_texts):
    """The whole kept-Serve-pool path with the CPU engine: 2 replicas, the stage's requests
    through Ray Data LLM's serve-deployment processor. Each call gives exactly the engine's
    own texts, none lost or twice; the second runs on the application the first deployed,
    and so does a driver that finds it left running; release deletes it and frees its CPUs."""
    import ray
    import ray.data
    from ray import serve

    from temporal_ray.engines.serve_pool import (
        hf_chat_deployment,
        run_serve_pool,
        start_serve_pool,
    )

    prompts = [{"prompt_id": f"p{i}", "prompt": f"Name {i} fruits."} for i in range(5)]
    engine = EngineConfig(actors=2, batch_size=4, keep_alive=True)
    name = pool_name(tiny_model, engine)
    cpus = ray.cluster_resources()["CPU"]
    pools = KeptPools()
    try:
        deployed_at = None
        for seed in (3, 4):
            generation = GenerationConfig(samples=2, max_new_tokens=8, temperature=0.9,
                                          seed=seed)
            requests = ray.data.from_items([
                row for prompt in prompts for row in candidate_requests(
                    prompt, "present", generation.samples, generation.temperature,
                    generation.top_p, generation.max_new_tokens, generation.seed)])
            before = pools.calls()
            rows = run_serve_pool(requests, tiny_model, engine, pools,
                                  deployment=hf_chat_deployment).take_all()
            assert pools.use_since(before) == ("started" if deployed_at is None else "reused")
            texts = {(r["prompt_id"], r["sample_index"]): r["generated_text"] for r in rows}
            assert len(rows) == len(texts) == 10
            assert texts == engine_texts(tiny_model, prompts, "present", generation)
            assert all(r["num_generated_tokens"] > 0 and r["num_input_tokens"] > 0
                       for r in rows)
            assert set(rows[0]) == {"prompt_id", "prompt", "role", "sample_index", "messages",
                                    "sampling_params", "generated_text", "num_input_tokens",
                                    "num_generated_tokens"}
            app = serve.status().applications[name]
            deployed_at = deployed_at or app.last_deployed_time_s
            assert app.last_deployed_time_s == deployed_at  # not deployed again
            assert app.deployments["engine"].replica_states == {"RUNNING": 2}
        assert pools.running() == [name]
        # A rerun after a killed driver: the application outlived it (Serve apps are
        # detached), and the new driver, which knows no pool yet, uses it as it is.
        pools = KeptPools()
        start_serve_pool(tiny_model, engine, pools, deployment=hf_chat_deployment)
        assert serve.status().applications[name].last_deployed_time_s == deployed_at
        assert pools.running() == [name]
    finally:
        pools.release()
    # Released: the application is gone, and with nothing else served, Serve itself (so
    # the next Serve user of the cluster starts it with the HTTP options it needs).
    assert pools.running() == [] and not serve_is_running()
    deadline = time.time() + 30  # replicas give their CPUs back asynchronously
    while ray.available_resources().get("CPU", 0) < cpus:
        assert time.time() < deadline, f"CPUs still held: {ray.available_resources()}"
        time.sleep(0.5)


def test_lora_on_one_base_with_a_kept_vllm_pool_is_refused_when_the_config_loads():
    from pathlib import Path

    from temporal_ray.config import ConfigError, load_config

    tiny = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
    lora = ["dpo.lora.enabled=true", "dpo.lora.base=initial"]
    with pytest.raises(ConfigError, match="engine: a kept vLLM pool .* cannot serve the LoRA"):
        load_config(tiny, lora + ["engine.kind=vllm", "engine.keep_alive=true"])
    with pytest.raises(ConfigError, match=r"pools\.future: a kept vLLM pool"):
        load_config(tiny, lora + ["engine.kind=vllm",
                                  "pools={future: {keep_alive: true}}"])
    assert load_config(tiny, lora + ["engine.kind=vllm"]).engine.keep_alive is False
