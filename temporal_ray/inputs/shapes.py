"""A row's text, in either shape users bring: plain fields or chat `messages`.

    plain: {"prompt": ..., "response": ..., "system": ...}    (field names from the source)
    chat:  {"messages": [{"role": "system", ...}, {"role": "user", ...},
                         {"role": "assistant", ...}]}
    TRL's conversational prompt-completion rows: {"prompt": [messages], "completion": [...]}
    (the prompt field holds messages; set response_field: completion)

Out: `Turn`s: (system, prompt) for a prompt, (system, prompt, response) for an SFT example;
`system` is "" when the row has none. A row that does not fit raises `PromptFileError` naming
the row (`where`) and the field. Conversations of more than one user turn are refused: the
loop samples, judges and trains single-turn answers. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from temporal_ray.config.inputs import DataSource
from temporal_ray.core.prompts import PromptFileError


@dataclass(frozen=True)
class Turn:
    prompt: str
    system: str = ""
    response: str | None = None


def text_field(row: dict[str, Any], name: str, where: str) -> str:
    """The non-empty string field `name` of a row, or a `PromptFileError`."""
    if name not in row:
        raise PromptFileError(f"{where}: missing field {name!r}")
    value = row[name]
    if not isinstance(value, str) or not value.strip():
        raise PromptFileError(f"{where}: field {name!r} must be a non-empty string")
    return value


def read_turn(row: dict[str, Any], source: DataSource, where: str,
              with_response: bool) -> Turn:
    """The row's prompt (and response, `with_response`) in whichever shape it has."""
    if row.get(source.messages_field) is not None:
        return _chat_turn(row[source.messages_field], source.messages_field, where,
                          with_response)
    if isinstance(row.get(source.prompt_field), list):  # TRL's conversational prompt
        turn = _chat_turn(row[source.prompt_field], source.prompt_field, where, False)
        if not with_response:
            return turn
        answer = row.get(source.response_field)
        if isinstance(answer, list):
            answer = _chat_answer(answer, source.response_field, where)
        return Turn(turn.prompt, turn.system,
                    text_field({source.response_field: answer}, source.response_field, where))
    if source.prompt_field not in row:
        raise PromptFileError(f"{where}: missing field {source.prompt_field!r} (or a "
                              f"{source.messages_field!r} list of chat messages)")
    system = row.get(source.system_field)
    if system is not None and not isinstance(system, str):
        raise PromptFileError(f"{where}: field {source.system_field!r} must be a string")
    return Turn(prompt=text_field(row, source.prompt_field, where), system=system or "",
                response=text_field(row, source.response_field, where) if with_response
                else None)


def _chat_turn(messages: Any, field: str, where: str, with_response: bool) -> Turn:
    """[system?] user [assistant]: the assistant's turn is required for SFT; for a prompt it
    may be there and is left out (the model writes its own answer)."""
    roles, texts = _messages(messages, field, where)
    system = texts.pop(0) if roles[0] == "system" else ""
    roles = roles[1:] if roles[0] == "system" else roles
    allowed = [["user", "assistant"]] if with_response else [["user"], ["user", "assistant"]]
    if roles not in allowed:
        raise PromptFileError(
            f"{where}: field {field!r} has roles {roles} after any system message; expected "
            f"{' or '.join(map(str, allowed))}: one user turn"
            f"{' and its answer' if with_response else ''} (multi-turn conversations are not "
            "supported: keep their first turn)")
    return Turn(prompt=texts[0], system=system,
                response=texts[1] if with_response else None)


def _chat_answer(messages: list[Any], field: str, where: str) -> str:
    """The one assistant message of a conversational completion."""
    roles, texts = _messages(messages, field, where)
    if roles != ["assistant"]:
        raise PromptFileError(f"{where}: field {field!r} must hold one assistant message, "
                              f"not roles {roles}")
    return texts[0]


def _messages(messages: Any, field: str, where: str) -> tuple[list[str], list[str]]:
    """The roles and contents of a list of {role, content} messages, each checked."""
    if not isinstance(messages, list) or not messages:
        raise PromptFileError(f"{where}: field {field!r} must be a non-empty list of "
                              "{role, content} messages")
    roles, texts = [], []
    for index, message in enumerate(messages):
        at = f"{where}: {field}[{index}]"
        if not isinstance(message, dict):
            raise PromptFileError(f"{at} must be a {{role, content}} object")
        role, content = message.get("role"), message.get("content")
        if role not in ("system", "user", "assistant"):
            raise PromptFileError(f"{at}.role must be system, user or assistant, not {role!r}")
        if not isinstance(content, str) or not content.strip():
            raise PromptFileError(f"{at}.content must be a non-empty string")
        roles.append(role)
        texts.append(content)
    return roles, texts
