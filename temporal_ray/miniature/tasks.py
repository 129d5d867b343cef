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
levels, responses of a chosen quality (`corrupt`), and judges that read the answer key
(`pairwise_verdict`, the form-only baseline). The data files a run needs are written from these
by toy_data.py. Pure: no models, no Ray; all randomness from `random.Random(seed)`.
"""

from __future__ import annotations

import enum
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

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


_PROMPT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("sortd", re.compile(r"Sort the digits: (\d+)")),
    ("sort", re.compile(r"Sort the letters: ([a-z]+)")),
    ("reverse", re.compile(r"Reverse the word: ([a-z]+)")),
    ("count", re.compile(r"How many letters in: ([a-z]+)\?")),
    ("add", re.compile(r"What is (\d+) \+ (\d+)\?")),
)


def task_from_prompt(prompt: str) -> Task:
    """The `Task` a prompt text asks (every family's answer follows from its prompt), for
    judges that see only the prompt and the response."""
    for family, pattern in _PROMPT_PATTERNS:
        match = pattern.fullmatch(prompt.strip())
        if match:
            groups = match.groups()
            value = (int(groups[0]), int(groups[1])) if family == "add" else groups[0]
            return _task(family, value)
    families = ", ".join(KNOWN_FAMILIES)
    raise ValueError(f"{prompt!r} is not a prompt of the synthetic domain ({families})")


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


# ------------------------------------------------------------------ judging by the answer key
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


def answer_key(tasks: Sequence[Task]) -> dict[str, Task]:
    """Prompt text -> its `Task` (answer and family), for grading generated responses."""
    return {t.prompt: t for t in tasks}
