"""The LLM-as-a-Judge prompt: Yuan et al.'s additive 5-point rubric (Self-Rewarding LMs, Fig. 2).

`judge_messages` turns one (prompt, response) into the chat messages a judge model answers.
A custom template (judge.prompt_template) replaces the rubric; it must hold the `{prompt}` and
`{response}` placeholders. Pure: no model, no Ray.
"""

from __future__ import annotations

import re
from pathlib import Path

ADDITIVE_5_POINT_RUBRIC = """\
Review the user's question and the corresponding response using the additive 5-point scoring \
system described below. Points are accumulated based on the satisfaction of each criterion:
- Add 1 point if the response is relevant and provides some information related to the user's \
inquiry, even if it is incomplete or contains some irrelevant content.
- Add another point if the response addresses a substantial portion of the user's question, but \
does not completely resolve the query or provide a direct answer.
- Award a third point if the response answers the basic elements of the user's question in a \
useful way, regardless of whether it seems to have been written by an AI Assistant or if it has \
elements typically found in blogs or search results.
- Grant a fourth point if the response is clearly written from an AI Assistant's perspective, \
addressing the user's question directly and comprehensively, and is well-organized and helpful, \
even if there is slight room for improvement in clarity, conciseness or focus.
- Bestow a fifth point for a response that is impeccably tailored to the user's question by an \
AI Assistant, without extraneous information, reflecting expert knowledge, and demonstrating a \
high-quality, engaging, and insightful answer.

User: {prompt}

<response>{response}</response>

After examining the user's instruction and the response:
- Briefly justify your total score, up to 100 words.
- Conclude with the score using the format: "Score: <total points>"

Remember to assess from the AI Assistant perspective, utilizing web search knowledge as \
necessary. To evaluate the response in alignment with this additive scoring model, we'll \
systematically attribute points based on the outlined criteria."""


def load_template(path: str | None) -> str:
    """The judge template: the built-in rubric, or a file that holds both placeholders."""
    if not path:
        return ADDITIVE_5_POINT_RUBRIC
    template = Path(path).read_text(encoding="utf-8")
    for placeholder in ("{prompt}", "{response}"):
        if placeholder not in template:
            raise ValueError(f"judge template {path} lacks the {placeholder} placeholder")
    return template


_PLACEHOLDER = re.compile(r"\{(prompt|response)\}")


def judge_messages(template: str, prompt: str, response: str) -> list[dict[str, str]]:
    """The chat the judge answers. Both placeholders are filled in one pass (not str.format:
    responses contain braces, and a prompt may contain the text "{response}")."""
    values = {"prompt": prompt, "response": response}
    text = _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)
    return [{"role": "user", "content": text}]
