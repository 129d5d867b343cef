"""Open Assistant (oasst1, oasst2) messages -> first-turn instruction pairs.

In:  (where, row) for each row as the Hugging Face dataset ships them: one row per message,
     with message_id, parent_id (null for a tree's first message), text, role ("prompter" or
     "assistant"), lang, rank (0 = best among its siblings; may be null), deleted,
     review_result and synthetic.
Out: one pair {prompt, response, source, id} per tree: the root prompter message and its
     best-ranked assistant reply (lowest rank; unranked replies after ranked ones, then the
     first in input order). Both messages must be in an accepted language, not deleted, not
     failed in review and not synthetic. Duplicate prompts keep their first pair.
Pure: rows in, pairs out; every dropped prompt is counted by reason.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from temporal_ray.data_recipe import fields
from temporal_ray.data_recipe.errors import DataRecipeError

ROLES = ("prompter", "assistant")


@dataclass
class _Reply:
    rank_key: tuple[bool, float, int]
    text: str


def _reason(row: dict[str, Any], where: str, languages: tuple[str, ...]) -> str | None:
    """Why a message is not usable, or None."""
    if fields.flag(row, "deleted", where):
        return "deleted"
    if fields.flag(row, "review_result", where) is False:
        return "review_failed"
    if fields.flag(row, "synthetic", where):
        return "synthetic"
    if fields.text(row, "lang", where, optional=True) not in languages:
        return "not_" + "_".join(languages)
    if not fields.text(row, "text", where).strip():
        return "empty"
    return None


def _rank(row: dict[str, Any], where: str) -> float | None:
    rank = row.get("rank")
    if rank is None:
        return None
    if isinstance(rank, bool) or not isinstance(rank, (int, float)):
        raise DataRecipeError(f"{where}: field 'rank' must be a number or null, got {rank!r}")
    return float(rank)


def first_turn_pairs(rows: Iterable[tuple[str, dict[str, Any]]],
                     languages: tuple[str, ...] = ("en",)
                     ) -> tuple[list[dict[str, str]], Counter[str]]:
    """The first-turn pairs of every usable tree, in input order, and the drops by reason."""
    roots: list[tuple[str, str]] = []          # (message_id, text), in input order
    root_drops: Counter[str] = Counter()
    best: dict[str, _Reply] = {}
    reply_drops: dict[str, Counter[str]] = defaultdict(Counter)
    seen: set[str] = set()
    for order, (where, row) in enumerate(rows):
        message_id = fields.text(row, "message_id", where)
        role = fields.text(row, "role", where)
        if role not in ROLES:
            raise DataRecipeError(f"{where}: field 'role' must be one of {ROLES}, got {role!r}")
        if message_id in seen:  # oasst2 repeats oasst1's trees: give both, counted once
            root_drops["duplicate_message"] += 1
            continue
        seen.add(message_id)
        parent = fields.text(row, "parent_id", where, optional=True)
        reason = _reason(row, where, languages)
        if parent is None and role == "prompter":
            if reason:
                root_drops[f"prompt_{reason}"] += 1
            else:
                roots.append((message_id, row["text"].strip()))
        elif parent is not None and role == "assistant":
            if reason:
                reply_drops[parent][f"reply_{reason}"] += 1
                continue
            rank = _rank(row, where)
            key = (rank is None, rank or 0.0, order)
            if parent not in best or key < best[parent].rank_key:
                best[parent] = _Reply(key, row["text"].strip())
    return _pairs(roots, best, reply_drops, root_drops)


def _pairs(roots: list[tuple[str, str]], best: dict[str, _Reply],
           reply_drops: dict[str, Counter[str]], dropped: Counter[str]
           ) -> tuple[list[dict[str, str]], Counter[str]]:
    pairs: list[dict[str, str]] = []
    prompts: set[str] = set()
    for message_id, prompt in roots:
        reply = best.get(message_id)
        if reply is None:
            dropped["no_usable_reply"] += 1
            dropped.update(reply_drops.get(message_id, {}))
            continue
        key = fields.normalized(prompt)
        if key in prompts:
            dropped["duplicate_prompt"] += 1
            continue
        prompts.add(key)
        pairs.append({"prompt": prompt, "response": reply.text, "source": "oasst",
                      "id": f"oasst-{message_id}"})
    return pairs, dropped
