"""`temporal-ray serve` (serve.py): the API-key option, a Serve already running without
proxies, and the vLLM app (the CPU app over HTTP: test_serve_cpu.py)."""

from __future__ import annotations

import pytest


def test_an_api_key_that_cannot_be_honoured_stops_the_server_before_it_starts(tiny_model,
                                                                             monkeypatch):
    """An unset or empty key variable, or a key with vLLM (Ray Serve LLM has no API-key
    setting), is refused with what to do, before Ray or Serve start."""
    from temporal_ray.serve import ApiKeyError, read_api_key, serve_checkpoint

    monkeypatch.delenv("TEMPORAL_RAY_NO_SUCH_KEY", raising=False)
    with pytest.raises(ApiKeyError, match="TEMPORAL_RAY_NO_SUCH_KEY is unset or empty; export"):
        serve_checkpoint(tiny_model, api_key_env="TEMPORAL_RAY_NO_SUCH_KEY", blocking=False)
    monkeypatch.setenv("TEMPORAL_RAY_KEY", " ")
    with pytest.raises(ApiKeyError, match="unset or empty"):
        read_api_key("TEMPORAL_RAY_KEY", "hf")
    monkeypatch.setenv("TEMPORAL_RAY_KEY", "k")
    assert read_api_key("TEMPORAL_RAY_KEY", "hf") == "k"
    with pytest.raises(ApiKeyError, match="not supported with --engine vllm.*--engine hf"):
        serve_checkpoint(tiny_model, engine="vllm", api_key_env="TEMPORAL_RAY_KEY",
                         blocking=False)


def test_a_hub_id_not_in_the_cache_is_named_before_ray_starts(monkeypatch, capsys):
    """`temporal-ray serve org/name` reads the Hub cache; offline and not cached, it says how
    to fetch the model, before Ray or Serve start."""
    from temporal_ray.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["serve", "other-org/missing"]) == 2
    err = capsys.readouterr().err
    assert "CHECKPOINT other-org/missing: no local directory" in err
    assert "`hf download other-org/missing --cache-dir " in err


def test_serve_running_without_http_proxies_is_named_instead_of_serving_nowhere(tiny_model,
                                                                               ray_cluster,
                                                                               free_port):
    """Serve started by another application without HTTP proxies is named, not used."""
    from ray import serve

    from temporal_ray.serve import serve_checkpoint

    serve.start(proxy_location="Disabled")
    try:
        with pytest.raises(RuntimeError, match="without HTTP proxies.*`serve shutdown`"):
            serve_checkpoint(tiny_model, name="tiny", port=free_port(), blocking=False)
    finally:
        serve.shutdown()


def test_the_vllm_app_takes_the_device_settings_of_the_vllm_pools():
    """GPUs stay GPUs (Ray Serve LLM's default: a GPU per vLLM worker); CPUs get vLLM's CPU
    build's settings and hold one CPU per replica, so the app and its ingress fit 2 cores."""
    from temporal_ray.engines.vllm import serve_llm_config
    from temporal_ray.serve import serve_engine

    gpu = serve_llm_config("/m", serve_engine("gpu", tensor_parallel_size=2), "m")
    assert "placement_group_config" not in gpu and gpu["engine_kwargs"]["dtype"] == "auto"
    assert gpu["engine_kwargs"]["tensor_parallel_size"] == 2
    assert "ray_actor_options" not in gpu["deployment_config"]
    cpu = serve_llm_config("/m", serve_engine("cpu"), "m")
    assert cpu["placement_group_config"]["bundles"] == [{"CPU": 1}]
    assert cpu["deployment_config"]["ray_actor_options"] == {"num_cpus": 0}
    assert {k: cpu["engine_kwargs"][k] for k in ("dtype", "enforce_eager",
                                                 "kv_cache_memory_bytes")} == {
        "dtype": "float32", "enforce_eager": True, "kv_cache_memory_bytes": 2**30}


@pytest.mark.slow
def test_vllm_endpoint_answers_an_openai_client_on_cpu(tiny_model, ray_cluster, free_port):
    """`serve --engine vllm` on a cluster without GPUs: Ray Serve LLM over vLLM's CPU build,
    chosen from the command alone, answering the OpenAI client."""
    pytest.importorskip("vllm", reason="vLLM is not installed (make install adds its CPU build)")
    from openai import OpenAI
    from ray import serve
    from ray.util import placement_group_table

    from temporal_ray.serve import serve_checkpoint

    url = serve_checkpoint(tiny_model, name="tiny", engine="vllm", port=free_port(),
                           blocking=False)
    try:
        # The device from the cluster alone: a replica holds one CPU and no GPU.
        replicas = [[{k: v for k, v in bundle.items() if v} for bundle in group["bundles"].values()]
                    for group in placement_group_table().values()
                    if group["state"] == "CREATED" and "temporal-ray" in group["name"]]
        assert replicas == [[{"CPU": 1.0}]], replicas
        client = OpenAI(base_url=url, api_key="x", timeout=120)
        assert [m.id for m in client.models.list().data] == ["tiny"]

        def ask(**sampling) -> object:
            return client.chat.completions.create(
                model="tiny", max_tokens=8, messages=[
                    {"role": "user", "content": "What is two plus three?"}], **sampling)

        answer = ask(temperature=0)
        assert answer.choices[0].message.role == "assistant"
        assert isinstance(answer.choices[0].message.content, str)
        assert 1 <= answer.usage.completion_tokens <= 8 and answer.usage.prompt_tokens > 5
        seeded = ask(temperature=1.0, seed=7)
        assert ask(temperature=1.0, seed=7).choices[0].message.content == \
            seeded.choices[0].message.content
    finally:
        serve.shutdown()
