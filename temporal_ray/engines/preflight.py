"""Checks that run before any cluster work: is M0 a usable causal LM, do the prompts fit.

A run that would fail after an hour of generation on a bad model path or a tokenizer without
a chat template fails here instead, in seconds, with the thing named and what to do.
Over-long prompts are dropped and counted rather than left to crash an engine pool.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from temporal_ray.core.rows import chat_messages


class ModelCheckError(ValueError):
    """M0 cannot be used; the message says which file or field and what to do."""


def check_model(path: str, field: str = "model.path") -> None:
    """M0 (or the model the config's `field` names) must be a local Hugging Face causal-LM
    directory whose tokenizer has a chat template. (Remote URIs are checked where they are
    copied down; Hub ids are snapshots by now, storage/hub.py.)"""
    if "://" in path:
        return
    root = Path(path)
    if not root.is_dir():
        raise ModelCheckError(f"{field} {path} is not a directory, nor a Hugging Face Hub id "
                              "(org/name or org/name@revision): a Hugging Face model "
                              "directory or Hub id is expected; for the tiny default run "
                              "`temporal-ray tiny-model runs/tiny-model`")
    config_file = root / "config.json"
    if not config_file.is_file():
        raise ModelCheckError(f"{field} {path} has no config.json: not a Hugging Face model")
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


TRUNCATION_MARK = " [...]"


class ContextBudget:
    """How many prompt tokens a model takes with max_new_tokens to spare: `max_model_len` when
    set (vLLM's engine.max_model_len), else the model config's max_position_embeddings.
    Chats are measured with the model's chat template. Remote models are not checked."""

    def __init__(self, model_path: str, max_new_tokens: int, max_model_len: int | None = None):
        self.tokenizer, context = (None, None) if "://" in model_path else \
            _tokenizer_and_context(model_path)
        context = min(filter(None, (context, max_model_len)), default=None)
        self.budget = context - max_new_tokens if context else None

    def lengths(self, chats: list[list[dict[str, str]]]) -> list[int]:
        texts = [self.tokenizer.apply_chat_template(chat, tokenize=False,
                                                    add_generation_prompt=True)
                 for chat in chats]
        return [len(i) for i in self.tokenizer(texts, add_special_tokens=False)["input_ids"]] \
            if texts else []

    def fits(self, chats: list[list[dict[str, str]]]) -> list[bool]:
        if self.budget is None:
            return [True] * len(chats)
        return [n <= self.budget for n in self.lengths(chats)]

    def shorten(self, text: str, chat_of: Callable[[str], list[dict[str, str]]],
                keep: str = "head") -> str | None:
        """`text` cut (its head or its tail kept, the cut marked) so that chat_of(text) fits;
        None when even a few tokens of it do not."""
        if self.budget is None:
            return text
        (length,) = self.lengths([chat_of(text)])
        if length <= self.budget:
            return text
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        excess = length - self.budget + len(self.tokenizer(TRUNCATION_MARK,
                                                          add_special_tokens=False)["input_ids"])
        for slack in (0, 4, 16):  # re-tokenising a cut text can merge or split a token
            count = len(ids) - excess - slack
            if count <= 0:
                return None
            cut = (self.tokenizer.decode(ids[:count]) + TRUNCATION_MARK if keep == "head"
                   else TRUNCATION_MARK.strip() + " " + self.tokenizer.decode(ids[-count:]))
            if self.fits([chat_of(cut)])[0]:
                return cut
        return None


def drop_overlong(rows: list[dict[str, str]], model_path: str, max_new_tokens: int,
                  max_model_len: int | None = None, truncate: bool = False
                  ) -> tuple[list[dict[str, str]], int]:
    """Prompt rows whose chat leaves room for max_new_tokens, and how many did not. Those are
    dropped, or with `truncate` cut to their last tokens (kept when that fits)."""
    budget = ContextBudget(model_path, max_new_tokens, max_model_len)
    fits = budget.fits([chat_messages(row["prompt"], row.get("system") or "") for row in rows])
    kept = []
    for row, ok in zip(rows, fits):
        if ok:
            kept.append(row)
        elif truncate:
            system = row.get("system") or ""
            cut = budget.shorten(row["prompt"], lambda text, s=system: chat_messages(text, s),
                                 keep="tail")
            if cut is not None:
                kept.append({**row, "prompt": cut})
    return kept, sum(not ok for ok in fits)
