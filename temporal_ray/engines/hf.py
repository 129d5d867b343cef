"""The `hf` engine: transformers `generate` inside a Ray Data actor, for CPU (and small GPU) runs.

In:  a pandas batch of request rows {messages, sampling_params, ...} (core/requests.py).
Out: the same rows plus generated_text, num_input_tokens, num_generated_tokens: the columns
     Ray Data LLM's vLLM stage writes, so everything downstream is engine-agnostic.

Batched with left padding and the chat template applied. Each row samples with its own
torch.Generator seeded from its sampling_params, so a row's text does not depend on which
rows share its batch or which actor runs it.

LoRA on one base: a row whose optional `model` column names an adapter directory (anything but
the engine's own `model_path`) is generated with that adapter on; adapters load on first use
and stay, so past, present and future share one copy of the base.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch


class PerRowSampler:
    """A logits processor that samples each row with its own generator (temperature, top-p)
    and returns logits that are -inf everywhere but the drawn token. `generate` then runs in
    greedy mode and picks exactly that token."""

    def __init__(self, params: list[dict[str, Any]], device: torch.device):
        self.params = params
        self.generators = [torch.Generator(device=device).manual_seed(int(p["seed"]))
                           for p in params]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        out = torch.full_like(scores, float("-inf"))
        for row, (p, generator) in enumerate(zip(self.params, self.generators)):
            logits = scores[row].float()
            if p["temperature"] <= 0:
                token = int(logits.argmax())
            else:
                probs = _top_p(torch.softmax(logits / p["temperature"], dim=-1), p["top_p"])
                token = int(torch.multinomial(probs, 1, generator=generator))
            out[row, token] = 0.0
        return out


def _top_p(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose mass reaches top_p."""
    if top_p >= 1.0:
        return probs
    sorted_probs, order = probs.sort(descending=True)
    keep = sorted_probs.cumsum(-1) - sorted_probs < top_p
    filtered = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
    return filtered / filtered.sum()


class HFEngine:
    """Callable class for `Dataset.map_batches(..., compute=ActorPoolStrategy(...))`."""

    def __init__(self, model_path: str, use_gpu: bool = False):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from temporal_ray.storage.files import ensure_local

        local = ensure_local(model_path)
        self.device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(local, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(local, dtype=dtype).to(self.device)
        self.model.eval()
        self.model_path = model_path
        self.adapters: dict[str, str] = {}
        """Adapter directory (as rows name it) -> its peft adapter name in `self.model`."""

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        if "model" not in batch.columns:
            return self._generate(batch)
        # One generate call per model named in the batch, rows back in their order.
        parts = [self._generate_with(name, group)
                 for name, group in batch.groupby("model", sort=False)]
        return pd.concat(parts).loc[batch.index]

    def _generate_with(self, name: str, batch: pd.DataFrame) -> pd.DataFrame:
        if name == self.model_path:
            if not self.adapters:
                return self._generate(batch)
            with self.model.disable_adapter():
                return self._generate(batch)
        adapter = self._load_adapter(name)  # first: it may wrap self.model in a PeftModel
        self.model.set_adapter(adapter)
        return self._generate(batch)

    def _load_adapter(self, path: str) -> str:
        from peft import PeftModel

        from temporal_ray.storage.files import ensure_local

        if path not in self.adapters:
            adapter_name = f"adapter_{len(self.adapters)}"
            if not self.adapters:
                self.model = PeftModel.from_pretrained(self.model, ensure_local(path),
                                                       adapter_name=adapter_name)
            else:
                self.model.load_adapter(ensure_local(path), adapter_name=adapter_name)
            self.model.to(self.device).eval()
            self.adapters[path] = adapter_name
        return self.adapters[path]

    def _generate(self, batch: pd.DataFrame) -> pd.DataFrame:
        from transformers import GenerationConfig, LogitsProcessorList

        params = [dict(p) for p in batch["sampling_params"]]
        texts = [self.tokenizer.apply_chat_template(_messages(m), tokenize=False,
                                                    add_generation_prompt=True)
                 for m in batch["messages"]]
        encoded = self.tokenizer(texts, return_tensors="pt", padding=True,
                                 add_special_tokens=False).to(self.device)
        max_new = max(int(p["max_tokens"]) for p in params)
        config = GenerationConfig(
            max_new_tokens=max_new, do_sample=False,
            pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id)
        with torch.no_grad():
            output = self.model.generate(
                **encoded, generation_config=config,
                logits_processor=LogitsProcessorList([PerRowSampler(params, self.device)]))
        new_tokens = output[:, encoded["input_ids"].shape[1]:].tolist()
        texts_out, counts = [], []
        for tokens, p in zip(new_tokens, params):
            tokens = _until_eos(tokens, self.tokenizer.eos_token_id)[: int(p["max_tokens"])]
            counts.append(len(tokens))
            texts_out.append(self.tokenizer.decode(tokens, skip_special_tokens=True).strip())
        result = batch.copy()
        result["generated_text"] = texts_out
        result["num_input_tokens"] = encoded["attention_mask"].sum(dim=1).tolist()
        result["num_generated_tokens"] = counts
        return result


def _messages(messages: Any) -> list[dict[str, str]]:
    # Arrow hands nested lists back as numpy arrays of dicts.
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _until_eos(tokens: list[int], eos_id: int | None) -> list[int]:
    if eos_id is not None and eos_id in tokens:
        return tokens[: tokens.index(eos_id) + 1]
    return tokens
