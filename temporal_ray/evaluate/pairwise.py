"""The pairwise judge's requests and verdicts: which of two answers to a prompt is better. Pure.

Each held-out prompt is judged twice: once with the model's answer first and the reference's
second, once the other way round (winrate.py turns both verdicts into one preference). The
built-in prompt asks for a short justification and a last line "Winner: first|second|tie";
a custom template (eval.judge.prompt_template) needs the {prompt}, {first} and {second}
placeholders.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from temporal_ray.core.requests import derive_seed, sampling_params

PAIRWISE_PROMPT = """\
Compare two responses to the user's question below and decide which one is better. Judge \
how correct, helpful, relevant and clear each response is. Do not let the order in which they \
are shown or their length sway you: a longer response is not better for being longer.

User: {prompt}

<response_first>{first}</response_first>

<response_second>{second}</response_second>

Explain your decision in at most 100 words, then end with exactly one line: \
"Winner: first", "Winner: second" or "Winner: tie"."""

_PLACEHOLDER = re.compile(r"\{(prompt|first|second)\}")


def load_pairwise_template(path: str | None) -> str:
    """The built-in pairwise prompt, or a file that holds all three placeholders."""
    if not path:
        return PAIRWISE_PROMPT
    template = Path(path).read_text(encoding="utf-8")
    missing = [p for p in ("{prompt}", "{first}", "{second}") if p not in template]
    if missing:
        raise ValueError(f"pairwise judge template {path} lacks {', '.join(missing)} "
                         "(eval.judge.prompt_template)")
    return template


def pairwise_messages(template: str, prompt: str, first: str, second: str
                      ) -> list[dict[str, str]]:
    """The chat the judge answers; placeholders filled in one pass (answers contain braces)."""
    values = {"prompt": prompt, "first": first, "second": second}
    return [{"role": "user", "content": _PLACEHOLDER.sub(lambda m: values[m.group(1)],
                                                         template)}]


def verdict_requests(prompt: dict[str, Any], model_answer: str, reference_answer: str,
                     template: str, temperature: float, max_tokens: int,
                     seed: int) -> list[dict[str, Any]]:
    """The two judge requests of one prompt: model first, then model second."""
    requests = []
    for model_first in (True, False):
        first, second = ((model_answer, reference_answer) if model_first
                         else (reference_answer, model_answer))
        # The user's prompt rides along, as in every stage's request rows.
        requests.append({
            "prompt_id": prompt["prompt_id"], "prompt": prompt["prompt"],
            "model_first": model_first,
            "messages": pairwise_messages(template, prompt["prompt"], first, second),
            "sampling_params": sampling_params(
                temperature, 1.0, max_tokens,
                derive_seed(seed, "pairwise", prompt["prompt_id"], model_first)),
        })
    return requests
