"""A synthetic instruction domain with exact ground truth: "the paper in miniature".

Task families with short exact answers: `sortd` ("Sort the digits: 75517" -> "15577", random
digit strings of configurable length; the miniature's default, see below), `add` ("What is
23 + 58?" -> "81", operands and sum in 0..99), `reverse` ("Reverse the word: cable" ->
"elbac"), `sort` ("Sort the letters: dcab" -> "abcd", random 3-5 letter strings) and `count`
("How many letters in: planet?" -> "6").

Why `sortd`: self-rewarding can only help where judging is easier than solving. Checking a
sorted answer takes two local tests (is each digit no larger than the next? are they the input's
digits?), while producing it takes the whole sort; and every digit is one token, so the model
sees each symbol it must check (a word family's letters hide inside BPE tokens).

In:  a seed and sizes. Out: `Task`s, their ground-truth `grade` on the judge rubric's quality
levels, responses of a chosen quality (`corrupt`), and the JSONL files a run needs:
ift.jsonl / eft.jsonl ({prompt, response}, SFT data), prompts.jsonl ({prompt_id, prompt}, the
iteration prompts) and heldout.jsonl ({prompt_id, prompt, answer, family}).

EFT prompts are the user-message content of `judge_messages(ADDITIVE_5_POINT_RUBRIC, ...)`: the
SFT stage puts a prompt through the chat template as one user turn, which rebuilds exactly the
chat the judge stage sends. Pure: no models, no Ray; all randomness from `random.Random(seed)`.
"""

from __future__ import annotations

import enum
import json
import math
import os
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from temporal_ray.core.rubric import ADDITIVE_5_POINT_RUBRIC, judge_messages

# Words of the prompt and answer templates: never counted as a rival answer (see `grade`).
FILLER = frozenset(
    "a an answer do give gives has how i in is it letters many not of reverse reversed sort "
    "sorted sure the think to what word".split())

_WORD_TEXT = """
apple bread chair table water house river stone light green plant cloud smile dream horse tiger
zebra mouse sheep goat lion bear wolf fox duck frog fish bird crab snake whale shark eagle owl
camel panda koala cable candle paper pencil book desk lamp clock phone radio piano guitar drum
flute song dance music movie story poem train plane boat ship truck bike road bridge tower castle
city town farm field forest beach ocean lake island hill valley desert snow rain storm wind sun
moon star planet earth fire metal gold silver iron glass wood sand salt sugar honey milk cheese
butter egg rice bean corn soup cake pie cookie candy lemon orange grape peach melon cherry berry
tomato potato onion carrot pepper garden flower tree leaf root seed grass rose lily tulip red blue
yellow purple brown black white pink gray dark happy sad angry calm brave quick slow tall short
small big warm cold hot soft hard loud quiet clean dirty rich poor young old new fast jump run walk
swim sing read write draw cook sleep laugh cry open close push pull carry throw catch kick climb
friend family mother father sister brother baby child king queen doctor farmer pilot singer teacher
window door floor wall roof shirt shoe hat coat dress ring bag box cup plate spoon fork knife
bottle basket pillow blanket
"""
WORDS: tuple[str, ...] = tuple(dict.fromkeys(
    w for w in _WORD_TEXT.split() if w != w[::-1] and w not in FILLER))

FAMILIES: tuple[str, ...] = ("add", "reverse", "sort", "count")
"""The word and number families (make_tasks' default); `sortd` is asked for by name."""
KNOWN_FAMILIES: tuple[str, ...] = ("sortd", *FAMILIES)
_NUMBER_FAMILIES = frozenset({"add", "count"})
DIGIT_LENGTHS = (3, 6)
"""Shortest and longest digit string of a `sortd` task."""

OFF_TOPIC_PHRASES: tuple[str, ...] = (
    "hello there, nice to meet you.", "let us talk about the weather.",
    "my favourite colour is green.", "please ask me something else.", "that is a good question.",
    "i do not know.", "the sky is blue today.", "thank you for asking!", "see you later.",
    "this is not my topic.", "what a lovely day.", "i like long walks.",
)


class Quality(enum.IntEnum):
    """Ground-truth quality levels, tied to the judge rubric by `RUBRIC_SCORE`."""

    OFF_TOPIC = 0        # anything else, empty included
    # Wrong but of the right kind: for a number question any number; for a word question a bare
    # word, or a near-variant of the answer (anagram, one letter changed); or a hedge.
    WRONG_ON_TOPIC = 1
    CORRECT_VERBOSE = 2  # the answer as a whole token, plus extra text
    CORRECT_CLEAN = 3    # exactly the answer (case, surrounding space, trailing . ! ? ignored)


RUBRIC_SCORE: dict[Quality, int] = {Quality.CORRECT_CLEAN: 5, Quality.CORRECT_VERBOSE: 4,
                                    Quality.WRONG_ON_TOPIC: 2, Quality.OFF_TOPIC: 0}
# One clause per quality: the EFT judgement the judge learns to write.
JUSTIFICATION: dict[Quality, str] = {
    Quality.CORRECT_CLEAN: "The response gives the correct answer directly and nothing else.",
    Quality.CORRECT_VERBOSE: "The response gives the correct answer but adds extra words.",
    Quality.WRONG_ON_TOPIC: "The response tries to answer the question but the answer is wrong.",
    Quality.OFF_TOPIC: "The response does not address the question.",
}


@dataclass(frozen=True)
class Task:
    family: str
    prompt: str
    answer: str


# ------------------------------------------------------------------ tasks
def _task(family: str, value: str | tuple[int, int]) -> Task:
    if family == "add":
        x, y = value
        return Task(family, f"What is {x} + {y}?", str(x + y))
    if family == "reverse":
        return Task(family, f"Reverse the word: {value}", value[::-1])
    if family == "sort":
        return Task(family, f"Sort the letters: {value}", "".join(sorted(value)))
    if family == "count":
        return Task(family, f"How many letters in: {value}?", str(len(value)))
    if family == "sortd":
        return Task(family, f"Sort the digits: {value}", "".join(sorted(value)))
    raise ValueError(f"unknown task family {family!r}; known: {', '.join(KNOWN_FAMILIES)}")


def _letters(rng: random.Random) -> str:
    """A random 3-5 letter string that is not already sorted (sorting must change it)."""
    while True:
        s = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 5)))
        if s != "".join(sorted(s)):
            return s


def _digits(rng: random.Random, lengths: tuple[int, int]) -> str:
    """A random digit string of lengths[0]..lengths[1] digits, not already sorted."""
    while True:
        s = "".join(rng.choice("0123456789") for _ in range(rng.randint(*lengths)))
        if s != "".join(sorted(s)):
            return s


def make_tasks(n: int, seed: int, families: Sequence[str] = FAMILIES,
               digit_lengths: tuple[int, int] = DIGIT_LENGTHS) -> list[Task]:
    """`n` distinct tasks, round-robin over the families while each has prompts left (reverse and
    count have one per word, add 5,050, sort and sortd are practically unbounded).
    Deterministic per seed."""
    rng = random.Random(seed)
    pools: dict[str, list] = {}
    for family in families:
        if family == "add":
            pools[family] = [(x, y) for x in range(100) for y in range(100 - x)]
        elif family in ("reverse", "count"):
            pools[family] = list(WORDS)
        elif family not in ("sort", "sortd"):
            raise ValueError(f"unknown task family {family!r}; known: "
                             f"{', '.join(KNOWN_FAMILIES)}")
        if family in pools:
            rng.shuffle(pools[family])
    tasks: list[Task] = []
    seen: set[str] = set()
    live = list(families)
    while len(tasks) < n:
        if not live:
            raise ValueError(f"only {len(tasks)} distinct tasks exist for families {families}")
        for family in list(live):
            if len(tasks) == n:
                break
            if family == "sort":
                task = _task(family, _letters(rng))
            elif family == "sortd":
                task = _task(family, _digits(rng, digit_lengths))
            elif pools[family]:
                task = _task(family, pools[family].pop())
            else:
                live.remove(family)
                continue
            if task.prompt not in seen:
                seen.add(task.prompt)
                tasks.append(task)
    return tasks


# ------------------------------------------------------------------ grading
def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z]+|\d+", text.lower())


def _resembles(token: str, answer: str) -> bool:
    """An anagram of the answer, or the answer with one letter changed."""
    return token.isalpha() and (sorted(token) == sorted(answer) or (
        len(token) == len(answer) and sum(a != b for a, b in zip(token, answer)) == 1))


def grade(task_or_answer: Task | str, response: str) -> Quality:
    """The ground-truth quality of `response`. Given a bare answer, the kind is read from it
    (digits: a number; letters: a word); given a `Task`, the tokens of its prompt are also
    allowed in a verbose answer ("23 + 58 = 81" for "What is 23 + 58?"). A response holding the
    answer and a rival answer ("81 or 82", "elbac, not elbca") is a hedge: WRONG_ON_TOPIC."""
    if isinstance(task_or_answer, Task):
        answer, prompt_tokens = task_or_answer.answer, set(_tokens(task_or_answer.prompt))
    else:
        answer, prompt_tokens = task_or_answer, set()
    answer = answer.strip().lower()
    number = answer.isdigit()
    bare = response.strip().lower().rstrip(".!? \t\n")
    if bare == answer:
        return Quality.CORRECT_CLEAN
    tokens = _tokens(response)

    def rival(token: str) -> bool:
        return token.isdigit() if number else _resembles(token, answer)

    if answer in tokens:
        hedged = any(t != answer and t not in FILLER and t not in prompt_tokens and rival(t)
                     for t in tokens)
        return Quality.WRONG_ON_TOPIC if hedged else Quality.CORRECT_VERBOSE
    if any(rival(t) for t in tokens if t not in FILLER) or (not number and bare.isalpha()):
        return Quality.WRONG_ON_TOPIC  # a rival answer, or a bare word for a word question
    return Quality.OFF_TOPIC


def is_correct(task_or_answer: Task | str, response: str) -> bool:
    return grade(task_or_answer, response) >= Quality.CORRECT_VERBOSE


def _source(task: Task) -> str:
    """The word or numbers the prompt is about (after the colon, or the sum)."""
    return task.prompt.split(":", 1)[1].strip(" ?") if ":" in task.prompt else task.prompt[8:-1]


def _wrong_digits(task: Task, rng: random.Random) -> str:
    """A wrong sort of the digits: shuffled, one digit changed (still in order: a near miss),
    the input echoed, or one digit dropped."""
    answer, digits = task.answer, list(task.answer)
    how = rng.choice(("shuffle", "change", "echo", "drop"))
    if how == "echo":
        return _source(task)  # the input is never already sorted (see _digits)
    if how == "shuffle" and len(set(answer)) > 1:
        while "".join(digits) == answer:
            rng.shuffle(digits)
    elif how == "change" or len(digits) == 1:
        i = rng.randrange(len(digits))
        digits[i] = rng.choice([d for d in "0123456789" if d != digits[i]])
        digits.sort()
    else:
        del digits[rng.randrange(len(digits))]
    return "".join(digits)


def _wrong(task: Task, rng: random.Random) -> str:
    if task.family == "sortd":
        return _wrong_digits(task, rng)
    if task.family in _NUMBER_FAMILIES:
        a, delta = int(task.answer), rng.choice((-3, -2, -1, 1, 2, 3))
        return str(a + delta if a + delta >= 0 else a - delta)  # off by a little, never < 0
    letters = list(task.answer)
    how = rng.choice(("shuffle", "swap_letter", "echo"))
    if how == "shuffle":
        rng.shuffle(letters)
    elif how == "swap_letter":
        i = rng.randrange(len(letters))
        letters[i] = rng.choice([c for c in "abcdefghijklmnopqrstuvwxyz" if c != letters[i]])
    else:
        return _source(task)  # echoing the input: reverse/sort exclude words already done
    return "".join(letters)


def _verbose(task: Task, rng: random.Random) -> str:
    a, src = task.answer, _source(task)
    own = {"add": f"{src} = {a}",
           "reverse": f"The word {src} reversed is {a}.", "sort": f"Sorted: {a}.",
           "count": f"The word {src} has {a} letters.", "sortd": f"Sorted: {a}."}[task.family]
    return rng.choice((f"The answer is {a}.", f"Sure, the answer is {a}.", f"{a}, I think.", own))


def corrupt(task: Task, rng: random.Random, quality: Quality) -> str:
    """A response to `task` that `grade` puts at `quality` (checked; retried if not)."""
    for _ in range(50):
        if quality == Quality.CORRECT_CLEAN:
            text = task.answer
        elif quality == Quality.CORRECT_VERBOSE:
            text = _verbose(task, rng)
        elif quality == Quality.WRONG_ON_TOPIC:
            wrong = _wrong(task, rng)
            text = wrong if rng.random() < 0.5 else f"The answer is {wrong}."
        else:
            text = rng.choice(OFF_TOPIC_PHRASES)
        if grade(task, text) == quality:
            return text
    raise RuntimeError(f"could not write a {quality.name} response to {task.prompt!r}")


# ------------------------------------------------------------------ data files
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


def form_only_score(task: Task, response: str) -> int:
    """The score of a judge that reads only an answer's form and takes every on-topic answer
    for correct: off topic 0, one bare token 5, more words 4. The baseline a judge must beat
    to show it checks correctness: on a balanced check set it already agrees on 3 of 4."""
    if grade(task, response) == Quality.OFF_TOPIC:
        return RUBRIC_SCORE[Quality.OFF_TOPIC]
    bare = len(_tokens(response)) == 1 and response.strip().rstrip(".!?").isalnum()
    return RUBRIC_SCORE[Quality.CORRECT_CLEAN if bare else Quality.CORRECT_VERBOSE]


def pairwise_verdict(row: dict[str, str], first: str, second: str) -> str:
    """The exact pairwise judge of the domain (a rule for `temporal-ray eval`): the answer of
    higher ground-truth quality wins, equal qualities tie. `row` is a heldout.jsonl row."""
    task = Task(row["family"], row["prompt"], row["answer"])
    a, b = grade(task, first), grade(task, second)
    return "first" if a > b else "second" if b > a else "tie"


def prompt_rows(tasks: Sequence[Task], prefix: str = "toy") -> list[dict[str, str]]:
    return [{"prompt_id": f"{prefix}{i:05d}", "prompt": t.prompt} for i, t in enumerate(tasks)]


def heldout_rows(tasks: Sequence[Task], prefix: str = "held") -> list[dict[str, str]]:
    return [{**row, "answer": t.answer, "family": t.family}
            for row, t in zip(prompt_rows(tasks, prefix), tasks)]


def answer_key(tasks: Sequence[Task]) -> dict[str, Task]:
    """Prompt text -> its `Task` (answer and family), for grading generated responses."""
    return {t.prompt: t for t in tasks}


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
