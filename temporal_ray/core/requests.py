"""Prompt rows to engine requests and engine outputs to candidate rows. Pure.

Both engines take the same request rows, the shape Ray Data LLM's vLLM processor expects:
    {messages: [{role, content}], sampling_params: {temperature, top_p, max_tokens, seed}}
one row per sample, each with its own seed (Ray's vLLM stage returns one completion per row;
vLLM's V1 engine runs n > 1 as n child requests anyway, and prefix caching prefills the shared
prompt once either way),
and both return the same columns: generated_text, num_input_tokens, num_generated_tokens.
"""

from __future__ import annotations

import hashlib
from typing import Any

from temporal_ray.core.rows import CandidateRow, chat_messages

Row = dict[str, Any]


def derive_seed(*parts: object) -> int:
    """A stable 31-bit seed from any parts (same parts, same seed, on every machine)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def sampling_params(temperature: float, top_p: float, max_tokens: int, seed: int) -> Row:
    return {"temperature": float(temperature), "top_p": float(top_p),
            "max_tokens": int(max_tokens), "seed": int(seed)}


def candidate_requests(prompt: Row, role: str, samples: int, temperature: float, top_p: float,
                       max_tokens: int, seed: int) -> list[Row]:
    """K request rows for one prompt, sampled by the model playing `role`."""
    return [
        {
            "prompt_id": prompt["prompt_id"],
            "prompt": prompt["prompt"],
            "system": prompt.get("system") or "",
            "role": role,
            "sample_index": index,
            "messages": chat_messages(prompt["prompt"], prompt.get("system") or ""),
            "sampling_params": sampling_params(
                temperature, top_p, max_tokens,
                derive_seed(seed, role, prompt["prompt_id"], index)),
        }
        for index in range(samples)
    ]


def to_candidate(row: Row) -> CandidateRow:
    """An engine output row as a candidate row."""
    return CandidateRow(
        prompt_id=row["prompt_id"],
        prompt=row["prompt"],
        system=row.get("system") or "",
        role=row["role"],
        sample_index=int(row["sample_index"]),
        response=row["generated_text"],
        prompt_tokens=int(row["num_input_tokens"]),
        response_tokens=int(row["num_generated_tokens"]),
    )
