"""Checks that run before any cluster work: is M0 a usable causal LM, do the prompts fit.

A run that would fail after an hour of generation on a bad model path or a tokenizer without
a chat template fails here instead, in seconds, with the thing named and what to do.
Over-long prompts are dropped and counted rather than left to crash an engine pool.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any


class ModelCheckError(ValueError):
    """M0 cannot be used; the message says which file or field and what to do."""


def check_model(path: str) -> None:
    """M0 must be a local Hugging Face causal-LM directory whose tokenizer has a chat template.
    (Remote URIs are checked where they are copied down.)"""
    if "://" in path:
        return
    root = Path(path)
    if not root.is_dir():
        raise ModelCheckError(f"model.path {path} is not a directory (a Hugging Face model "
                              "directory is expected; for the tiny default run "
                              "`temporal-ray tiny-model runs/tiny-model`)")
    config_file = root / "config.json"
    if not config_file.is_file():
        raise ModelCheckError(f"model.path {path} has no config.json: not a Hugging Face model")
    architectures = json.loads(config_file.read_text()).get("architectures") or []
    if not any(name.endswith("ForCausalLM") for name in architectures):
        raise ModelCheckError(f"{config_file}: architectures {architectures} holds no "
                              "...ForCausalLM: DPO and generation need a causal language model")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(root)
    if not tokenizer.chat_template:
        raise ModelCheckError(f"the tokenizer in {path} has no chat template: prompts and "
                              "judge requests are sent as chats. Add `chat_template` to "
                              "tokenizer_config.json (or a chat_template.jinja file)")


@functools.lru_cache(maxsize=4)
def _tokenizer_and_context(model_path: str) -> tuple[Any, int | None]:
    from transformers import AutoConfig, AutoTokenizer

    context = getattr(AutoConfig.from_pretrained(model_path), "max_position_embeddings", None)
    return AutoTokenizer.from_pretrained(model_path), context


def fits_context(chats: list[list[dict[str, str]]], model_path: str, max_new_tokens: int,
                 max_model_len: int | None = None) -> list[bool]:
    """Whether each chat, formatted with the model's chat template, leaves room for
    max_new_tokens in the context: `max_model_len` when set (vLLM's engine.max_model_len),
    else the model config's max_position_embeddings. Remote models are not checked."""
    if "://" in model_path:
        return [True] * len(chats)
    tokenizer, context = _tokenizer_and_context(model_path)
    context = min(filter(None, (context, max_model_len)), default=None)
    if not context:
        return [True] * len(chats)
    budget = context - max_new_tokens
    texts = [tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
             for chat in chats]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    return [len(i) <= budget for i in ids]


def drop_overlong(rows: list[dict[str, str]], model_path: str, max_new_tokens: int,
                  max_model_len: int | None = None) -> tuple[list[dict[str, str]], int]:
    """Prompt rows whose chat leaves room for max_new_tokens (`fits_context`), and how many
    were dropped."""
    fits = fits_context([[{"role": "user", "content": row["prompt"]}] for row in rows],
                        model_path, max_new_tokens, max_model_len)
    kept = [row for row, ok in zip(rows, fits) if ok]
    return kept, len(rows) - len(kept)
