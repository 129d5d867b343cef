"""The miniature's data files, written from the synthetic domain (tasks.py).

In:  a seed and sizes. Out: ift.jsonl / eft.jsonl ({prompt, response}, SFT data),
prompts.jsonl ({prompt_id, prompt}, the iteration prompts), heldout.jsonl ({prompt_id, prompt,
answer, family}), and candidates of known quality to check a judge against.

EFT prompts are the user-message content of `judge_messages(ADDITIVE_5_POINT_RUBRIC, ...)`: the
SFT stage puts a prompt through the chat template as one user turn, which rebuilds exactly the
chat the judge stage sends. Pure: no models, no Ray; all randomness from `random.Random(seed)`.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Sequence
from pathlib import Path

from temporal_ray.core.rubric import ADDITIVE_5_POINT_RUBRIC, judge_messages
from temporal_ray.miniature.tasks import (
    DIGIT_LENGTHS,
    FAMILIES,
    JUSTIFICATION,
    RUBRIC_SCORE,
    Quality,
    Task,
    corrupt,
    make_tasks,
)


def ift_rows(tasks: Sequence[Task], seed: int, wrong_share: float = 0.3) -> list[dict[str, str]]:
    """Instruction data: clean correct answers, except round(wrong_share * n) rows that are
    WRONG_ON_TOPIC or CORRECT_VERBOSE (half each, at random) so that M0 starts imperfect."""
    rng = random.Random(seed)
    flawed = set(rng.sample(range(len(tasks)), round(wrong_share * len(tasks))))
    rows = []
    for i, task in enumerate(tasks):
        quality = Quality.CORRECT_CLEAN
        if i in flawed:
            quality = rng.choice((Quality.WRONG_ON_TOPIC, Quality.CORRECT_VERBOSE))
        rows.append({"prompt": task.prompt, "response": corrupt(task, rng, quality)})
    return rows


def judge_prompt(task_prompt: str, candidate: str, template: str = ADDITIVE_5_POINT_RUBRIC) -> str:
    """The text of the judge's user turn for one candidate: the SFT prompt of an EFT row.
    `template` must be the one the run's judge uses (judge.prompt_template)."""
    return judge_messages(template, task_prompt, candidate)[0]["content"]


def eft_response(quality: Quality) -> str:
    return f"{JUSTIFICATION[quality]} Score: {RUBRIC_SCORE[quality]}"


def _balanced_qualities(n: int, rng: random.Random,
                        weights: Sequence[int] = (1, 1, 1, 1)) -> list[Quality]:
    """n quality levels in shares proportional to `weights` (one per Quality, from OFF_TOPIC up;
    equal by default: each n/4, +-1), in random order."""
    if len(weights) != len(Quality) or min(weights) < 0 or not sum(weights):
        raise ValueError(f"quality weights {list(weights)}: one non-negative weight per level "
                         f"({', '.join(q.name.lower() for q in Quality)}), not all zero")
    levels = [q for q, w in zip(Quality, weights) for _ in range(w)]
    qualities = (levels * math.ceil(n / len(levels)))[:n]
    rng.shuffle(qualities)
    return qualities


def eft_rows(tasks: Sequence[Task], seed: int, template: str = ADDITIVE_5_POINT_RUBRIC,
             weights: Sequence[int] = (1, 1, 1, 1)) -> list[dict[str, str]]:
    """Evaluation data: one candidate per task, its quality drawn in the shares of `weights`
    (see _balanced_qualities) and assigned at random, so that quality and family are
    independent."""
    rng = random.Random(seed)
    return [{"prompt": judge_prompt(t.prompt, corrupt(t, rng, q), template),
             "response": eft_response(q)}
            for t, q in zip(tasks, _balanced_qualities(len(tasks), rng, weights))]


def judge_check_rows(tasks: Sequence[Task], seed: int,
                     prefix: str = "check") -> list[dict[str, object]]:
    """Candidates of known quality to check a judge against: one per task, qualities balanced
    as in EFT, each with the rubric score a perfect judge gives (true_score)."""
    rng = random.Random(seed)
    return [{"prompt_id": f"{prefix}{i:05d}", "prompt": t.prompt,
             "response": corrupt(t, rng, q), "true_score": RUBRIC_SCORE[q]}
            for i, (t, q) in enumerate(zip(tasks, _balanced_qualities(len(tasks), rng)))]


def prompt_rows(tasks: Sequence[Task], prefix: str = "toy") -> list[dict[str, str]]:
    return [{"prompt_id": f"{prefix}{i:05d}", "prompt": t.prompt} for i, t in enumerate(tasks)]


def heldout_rows(tasks: Sequence[Task], prefix: str = "held") -> list[dict[str, str]]:
    return [{**row, "answer": t.answer, "family": t.family}
            for row, t in zip(prompt_rows(tasks, prefix), tasks)]


def load_tasks(path: str | Path) -> list[Task]:
    """The tasks of a heldout.jsonl file."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    objs = [json.loads(line) for line in lines if line.strip()]
    return [Task(o["family"], o["prompt"], o["answer"]) for o in objs]


def write_jsonl(rows: Sequence[dict], path: str | Path) -> Path:
    """Write rows atomically: a temporary file beside `path`, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def split_tasks(tasks: Sequence[Task], sizes: Sequence[int]) -> list[list[Task]]:
    """Split tasks into parts of the given sizes, each with the same family mix (to +-2 tasks
    per family) and in the original order: smooth weighted round-robin over the tasks grouped
    by family (each family block is dealt in proportion), then each part sorted back."""
    if sum(sizes) != len(tasks):
        raise ValueError(f"split sizes {list(sizes)} do not add up to {len(tasks)} tasks")
    rank = {f: k for k, f in enumerate(dict.fromkeys(t.family for t in tasks))}
    parts: list[list[int]] = [[] for _ in sizes]
    credit = [0] * len(sizes)
    for i in sorted(range(len(tasks)), key=lambda i: rank[tasks[i].family]):
        credit = [c + s for c, s in zip(credit, sizes)]
        k = max(range(len(sizes)), key=lambda j: (credit[j], -j))
        credit[k] -= len(tasks)
        parts[k].append(i)
    return [[tasks[i] for i in sorted(part)] for part in parts]


def build_toy_data(out_dir: str | Path, seed: int, n_ift: int, n_eft: int, n_prompts: int,
                   n_heldout: int, judge_template: str = ADDITIVE_5_POINT_RUBRIC,
                   families: Sequence[str] = FAMILIES,
                   digit_lengths: tuple[int, int] = DIGIT_LENGTHS,
                   eft_weights: Sequence[int] = (1, 1, 1, 1)) -> dict[str, str]:
    """Write ift/eft/prompts/heldout.jsonl to `out_dir`, their task prompts pairwise disjoint;
    return {name: path}."""
    sizes = {"ift": n_ift, "eft": n_eft, "prompts": n_prompts, "heldout": n_heldout}
    tasks = make_tasks(sum(sizes.values()), seed, families, digit_lengths)
    split = dict(zip(sizes, split_tasks(tasks, list(sizes.values()))))
    out = Path(out_dir)
    rows = {"ift": ift_rows(split["ift"], seed + 1),
            "eft": eft_rows(split["eft"], seed + 2, judge_template, eft_weights),
            "prompts": prompt_rows(split["prompts"]), "heldout": heldout_rows(split["heldout"])}
    return {name: str(write_jsonl(r, out / f"{name}.jsonl")) for name, r in rows.items()}
