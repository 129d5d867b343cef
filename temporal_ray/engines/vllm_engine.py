"""The `vllm` engine in one process, through vLLM's own API (`vllm.LLM`): what a kept pool runs.

In:  a pandas batch of request rows {messages, sampling_params, ...} (core/requests.py), with
     an optional `model` column naming a LoRA adapter directory of the engine's base.
Out: the same rows plus generated_text, num_input_tokens, num_generated_tokens, as every engine.

Ray Data LLM's processor (vllm.py) starts its engines for one dataset; a kept pool needs an
engine that outlives the stage and does two things Ray's wrappers do not: LoRA adapters from
the run directory (Ray 2.60's Serve LLM takes them from s3://, gs:// or Azure only), and new
weights loaded into the running engine (`load_weights`, vLLM's `reload_weights` on every
worker, as RL systems update their rollout engines) instead of a new engine. The engine
arguments are the processor's, from the same `vllm_engine_kwargs`, so both give one
request the same text.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from temporal_ray.config import EngineConfig
from temporal_ray.engines.vllm import vllm_engine_kwargs

if TYPE_CHECKING:
    import pandas as pd


def engine_arguments(engine: EngineConfig, lora_rank: int | None) -> dict[str, Any]:
    """`vllm.LLM`'s arguments: the processor's, plus the executor of a multi-GPU engine."""
    kwargs = vllm_engine_kwargs(engine, lora_rank)
    if engine.tensor_parallel_size * engine.pipeline_parallel_size > 1:
        # vLLM's Ray executor places the engine's GPU workers in a placement group of its own
        # (the actor itself holds no GPU), as OpenRLHF's engine actors do.
        kwargs["distributed_executor_backend"] = "ray"
    return kwargs


class VLLMEngine:
    """One vLLM engine for `model_path`, serving the base and, with `lora_rank`, LoRA
    adapters of it named by the rows' `model` column (loaded on first use, then kept)."""

    def __init__(self, model_path: str, engine: EngineConfig, lora_rank: int | None = None):
        from vllm import LLM

        from temporal_ray.storage.files import ensure_local

        self.llm = LLM(model=ensure_local(model_path), **engine_arguments(engine, lora_rank))
        self.tokenizer = self.llm.get_tokenizer()
        self.model_path = model_path
        self.adapters: dict[str, Any] = {}
        """Adapter directory (as rows name it) -> its vllm LoRARequest."""
        self.adapter_ids = itertools.count(1)
        """vLLM tells adapters apart by an integer id, from 1; never reused, so an adapter
        of a base loaded since is never taken for one loaded before."""

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        from vllm import SamplingParams

        prompts = [{"prompt_token_ids": self._prompt_tokens(m)} for m in batch["messages"]]
        params = [SamplingParams(**dict(p)) for p in batch["sampling_params"]]
        adapters = ([self._adapter(name) for name in batch["model"]]
                    if "model" in batch.columns else None)
        # One call for the whole batch: vLLM schedules the requests itself.
        outputs = self.llm.generate(prompts, params, lora_request=adapters, use_tqdm=False)
        result = batch.copy()
        result["generated_text"] = [o.outputs[0].text.strip() for o in outputs]
        result["num_input_tokens"] = [len(p["prompt_token_ids"]) for p in prompts]
        result["num_generated_tokens"] = [len(o.outputs[0].token_ids) for o in outputs]
        return result

    def load_weights(self, model_path: str) -> None:
        """Load `model_path`'s weights into the running engine (same architecture and
        tokenizer: `kept_pool.same_shape` checks). Adapters loaded so far are dropped."""
        from temporal_ray.storage.files import ensure_local

        self.llm.collective_rpc("reload_weights",
                                kwargs={"weights_path": ensure_local(model_path)})
        # Cached prefixes hold the old weights' keys and values.
        self.llm.reset_prefix_cache()
        self.model_path = model_path
        self.adapters.clear()

    def _prompt_tokens(self, messages: Any) -> list[int]:
        # Arrow hands nested lists back as numpy arrays of dicts. The template writes the
        # special tokens itself, as the hf engine has it.
        text = self.tokenizer.apply_chat_template(
            [{"role": m["role"], "content": m["content"]} for m in messages],
            tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _adapter(self, name: str) -> Any:
        """The LoRARequest of adapter directory `name`; None for the base itself."""
        from vllm.lora.request import LoRARequest

        if name == self.model_path:
            return None
        if name not in self.adapters:
            if "://" in name:
                raise ValueError(f"vLLM loads adapters from a filesystem path; {name} is "
                                 "remote: keep the run directory on a filesystem every node "
                                 "shares (NFS, a mounted bucket)")
            self.adapters[name] = LoRARequest(name, next(self.adapter_ids), name)
        return self.adapters[name]
