"""Checks that run before any cluster work: is M0 a usable causal LM, do the prompts fit.

A run that would fail after an hour of generation on a bad model path or a tokenizer without
a chat template fails here instead, in seconds, with the thing named and what to do.
Over-long prompts are dropped and counted rather than left to crash an engine pool.
"""

from __future__ import annotations

import json
from pathlib import Path


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


def drop_overlong(rows: list[dict[str, str]], model_path: str,
                  max_new_tokens: int) -> tuple[list[dict[str, str]], int]:
    """Prompts whose chat-formatted length leaves room for max_new_tokens, and how many were
    dropped. Context length is the model config's max_position_embeddings."""
    if "://" in model_path:
        return rows, 0
    from transformers import AutoConfig, AutoTokenizer

    context = getattr(AutoConfig.from_pretrained(model_path), "max_position_embeddings", None)
    if not context:
        return rows, 0
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    budget = context - max_new_tokens
    kept = []
    for row in rows:
        text = tokenizer.apply_chat_template([{"role": "user", "content": row["prompt"]}],
                                             tokenize=False, add_generation_prompt=True)
        if len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= budget:
            kept.append(row)
    return kept, len(rows) - len(kept)
