"""What every engine is: something that generates for a batch of request rows.

In:  a pandas batch of request rows {messages, sampling_params, ...} (core/requests.py), with
     an optional `model` column naming a LoRA adapter of the engine's base.
Out: the same rows plus `ENGINE_COLUMNS` (core/rows.py): generated_text, num_input_tokens,
     num_generated_tokens.
`HFEngine` is one; Ray Data LLM's vLLM and HTTP processors keep the same contract over a whole
dataset, so stages never ask which engine ran.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import pandas as pd


class Engine(Protocol):
    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame: ...
