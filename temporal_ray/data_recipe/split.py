"""The recipe's choice of rows: which pairs become IFT, which judged completions EFT, which
instructions the iterations' prompts. Every UltraFeedback instruction is used at most once,
and none that equals an Open Assistant prompt, so no iteration prompt was seen in SFT.

In:  Open Assistant first-turn pairs (oasst.py) and UltraFeedback items (ultrafeedback.py).
Out: `RecipeRows`: IFT rows {prompt, response, source, id}; EFT rows {prompt, response, score,
     source, id}, the prompt the judge rubric filled with (instruction, completion) and the
     answer "<justification>\\nScore: k"; prompt rows {prompt_id, prompt, source, iteration}
     in iteration order; drops by reason; counts.
Pure and seeded: the same rows and options give the same output, row for row.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from temporal_ray.core.rubric import ADDITIVE_5_POINT_RUBRIC, judge_messages
from temporal_ray.data_recipe.errors import DataRecipeError
from temporal_ray.data_recipe.fields import normalized
from temporal_ray.data_recipe.ultrafeedback import Completion, Item

SCORES = range(6)


@dataclass(frozen=True)
class RecipeOptions:
    ift_size: int = 5000
    """Instruction pairs: Open Assistant's first, then UltraFeedback's best-rated (method.md)."""
    eft_size: int = 1871
    """Judged UltraFeedback completions (the paper's 1,871)."""
    iterations: int = 2
    prompts_per_iteration: int = 4000
    seed: int = 0
    min_prompt_chars: int = 10
    max_prompt_chars: int = 2000
    """About 500 tokens: room for max_new_tokens 1024 within a 2048-token DPO pair."""
    max_response_chars: int = 4000
    """IFT answers and EFT judged responses: with the rubric, under sft.max_length 2048."""
    max_eft_prompt_chars: int = 6000
    """The whole judge prompt (rubric, instruction, response): about 1,500 tokens, so that
    sft.max_length 2048 keeps the answer's "Score: k" line (SFT cuts a response's tail)."""
    ift_min_rating: float = 4.5
    """An UltraFeedback completion fills IFT only if GPT-4's mean rating is at least this."""
    balance_scores: bool = True
    """EFT: as many completions of each score 0..5 as the data allow (round robin)."""
    languages: tuple[str, ...] = ("en",)


OPTION_HELP = {
    "ift_size": "instruction pairs: Open Assistant's, then UltraFeedback's best-rated",
    "eft_size": "judged UltraFeedback completions (the paper: 1,871)",
    "iterations": "iterations to write prompts for",
    "prompts_per_iteration": "prompts of each iteration (the paper: 4,000)",
    "seed": "the seed of every shuffle and choice",
    "min_prompt_chars": "shorter instructions are dropped",
    "max_prompt_chars": "longer instructions are dropped",
    "max_response_chars": "longer IFT answers and EFT judged responses are dropped",
    "max_eft_prompt_chars": "EFT items whose judge prompt is longer are dropped (SFT would "
                            "cut their Score line)",
    "ift_min_rating": "GPT-4's mean rating (1-5) an UltraFeedback completion needs to fill IFT",
    "balance_scores": "EFT: as many items of each score 0-5 as the data allow",
    "languages": "Open Assistant languages kept",
}


@dataclass
class RecipeRows:
    ift: list[dict] = field(default_factory=list)
    eft: list[dict] = field(default_factory=list)
    prompts: list[dict] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    counts: dict[str, object] = field(default_factory=dict)
    shortfalls: list[str] = field(default_factory=list)


def _item_id(text: str) -> str:
    return "uf-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def _prompt_fits(prompt: str, options: RecipeOptions, dropped: Counter[str], source: str
                 ) -> bool:
    if len(prompt) < options.min_prompt_chars:
        dropped[f"{source}.prompt_too_short"] += 1
        return False
    if len(prompt) > options.max_prompt_chars:
        dropped[f"{source}.prompt_too_long"] += 1
        return False
    return True


def split_rows(pairs: list[dict], items: Iterable[Item], options: RecipeOptions,
               template: str = ADDITIVE_5_POINT_RUBRIC) -> RecipeRows:
    """IFT: Open Assistant's pairs, then UltraFeedback's best-rated completions; EFT: judged
    completions of other instructions; prompts: the instructions left, shuffled."""
    rng = random.Random(options.seed)
    out = RecipeRows()
    oasst = _usable_pairs(pairs, options, out.dropped)
    rng.shuffle(oasst)
    seen = {normalized(p["prompt"]) for p in oasst}
    pool = _unique(items, seen, options, out.dropped)
    rng.shuffle(pool)
    taken: set[int] = set()
    ift = [dict(p) for p in oasst[: options.ift_size]]
    ift += _fill_ift(pool, taken, options.ift_size - len(ift), options)
    rng.shuffle(ift)
    out.ift = ift
    out.eft = _choose_eft(pool, taken, options, rng, template, out.dropped)
    out.prompts = _choose_prompts(pool, taken, options)
    _count(out, oasst, pool, taken, options)
    return out


def _usable_pairs(pairs: list[dict], options: RecipeOptions, dropped: Counter[str]
                  ) -> list[dict]:
    usable = []
    for pair in pairs:
        if not _prompt_fits(pair["prompt"], options, dropped, "oasst"):
            continue
        if len(pair["response"]) > options.max_response_chars:
            dropped["oasst.response_too_long"] += 1
            continue
        usable.append(pair)
    return usable


def _unique(items: Iterable[Item], seen: set[str], options: RecipeOptions,
            dropped: Counter[str]) -> list[Item]:
    """Items whose instruction fits and is new; completions whose response is too long go."""
    pool = []
    for item in items:
        key = normalized(item.instruction)
        if key in seen:
            dropped["ultrafeedback.duplicate_prompt"] += 1
            continue
        seen.add(key)
        if not _prompt_fits(item.instruction, options, dropped, "ultrafeedback"):
            continue
        kept = tuple(c for c in item.completions
                     if len(c.response) <= options.max_response_chars)
        if len(kept) < len(item.completions):
            dropped["ultrafeedback.completion_too_long"] += len(item.completions) - len(kept)
        pool.append(Item(item.where, item.source, item.instruction, kept))
    return pool


def _fill_ift(pool: list[Item], taken: set[int], wanted: int, options: RecipeOptions
              ) -> list[dict]:
    """UltraFeedback's best-rated completion of the next instructions, while IFT is short."""
    rows: list[dict] = []
    for index, item in enumerate(pool):
        if len(rows) >= wanted:
            break
        if not item.completions:
            continue
        best = max(item.completions, key=lambda c: c.rating)  # the first of equals
        if best.rating >= options.ift_min_rating:
            taken.add(index)
            rows.append({"prompt": item.instruction, "response": best.response,
                         "source": "ultrafeedback", "id": _item_id(item.instruction)})
    return rows


def _judge_prompt(template: str, item: Item, completion: Completion) -> str:
    return judge_messages(template, item.instruction, completion.response)[0]["content"]


def _eft_row(item: Item, completion: Completion, template: str) -> dict:
    prompt = _judge_prompt(template, item, completion)
    return {"prompt": prompt, "response": f"{completion.justification}\nScore: "
            f"{completion.score}", "score": completion.score, "source": "ultrafeedback",
            "id": _item_id(item.instruction)}


def _choose_eft(pool: list[Item], taken: set[int], options: RecipeOptions,
                rng: random.Random, template: str, dropped: Counter[str]) -> list[dict]:
    """One judged completion per instruction; balanced: round robin over the scores 0..5."""
    buckets: dict[int, list[tuple[int, Completion]]] = {score: [] for score in SCORES}
    for index, item in enumerate(pool):
        if index in taken:
            continue
        completions = [c for c in item.completions if len(_judge_prompt(
            template, item, c)) <= options.max_eft_prompt_chars]
        if len(completions) < len(item.completions):
            dropped["ultrafeedback.eft_prompt_too_long"] += (len(item.completions)
                                                             - len(completions))
        rng.shuffle(completions)
        for completion in completions if options.balance_scores else completions[:1]:
            buckets[completion.score].append((index, completion))
    if not options.balance_scores:  # in pool order, whatever the score
        order = sorted((c for bucket in buckets.values() for c in bucket), key=lambda c: c[0])
        buckets = {0: order}
    chosen: list[tuple[int, Completion]] = []
    cursors = dict.fromkeys(buckets, 0)
    while len(chosen) < options.eft_size:
        progressed = False
        for score, bucket in buckets.items():
            while cursors[score] < len(bucket) and bucket[cursors[score]][0] in taken:
                cursors[score] += 1
            if cursors[score] < len(bucket) and len(chosen) < options.eft_size:
                chosen.append(bucket[cursors[score]])
                taken.add(bucket[cursors[score]][0])
                progressed = True
        if not progressed:
            break
    rows = [_eft_row(pool[index], completion, template) for index, completion in chosen]
    rng.shuffle(rows)
    return rows


def _choose_prompts(pool: list[Item], taken: set[int], options: RecipeOptions) -> list[dict]:
    wanted = options.iterations * options.prompts_per_iteration
    free = [item for index, item in enumerate(pool) if index not in taken]
    if len(free) < wanted:
        raise DataRecipeError(
            f"UltraFeedback has {len(free)} instructions left for the iterations' prompts "
            f"after IFT and EFT and the filters; {options.iterations} iterations x "
            f"{options.prompts_per_iteration} prompts need {wanted}: lower "
            "--prompts-per-iteration or --iterations, or --ift-size or --eft-size")
    return [{"prompt_id": _item_id(item.instruction), "prompt": item.instruction,
             "source": item.source, "iteration": n // options.prompts_per_iteration}
            for n, item in enumerate(free[:wanted])]


def _count(out: RecipeRows, oasst: list[dict], pool: list[Item], taken: set[int],
           options: RecipeOptions) -> None:
    scores = Counter(row["score"] for row in out.eft)
    out.counts = {
        "ift": len(out.ift), "eft": len(out.eft), "prompts": len(out.prompts),
        "ift_by_source": dict(sorted(Counter(r["source"] for r in out.ift).items())),
        "eft_by_score": {str(s): scores.get(s, 0) for s in SCORES},
        "oasst_pairs_usable": len(oasst),
        "ultrafeedback_instructions_usable": len(pool),
        "ultrafeedback_instructions_unused": len(pool) - len(taken) - len(out.prompts)}
    if len(out.ift) < options.ift_size:
        out.shortfalls.append(f"IFT has {len(out.ift)} of the {options.ift_size} pairs asked "
                              f"for (lower --ift-min-rating or give more data)")
    if len(out.eft) < options.eft_size:
        out.shortfalls.append(f"EFT has {len(out.eft)} of the {options.eft_size} items asked "
                              "for")
