"""The synthetic domain (tasks.py) and its data files (toy_data.py): deterministic data, exact
grading, EFT scores the judge parser reads."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from temporal_ray.core.judging import parse_judgement
from temporal_ray.core.rubric import ADDITIVE_5_POINT_RUBRIC, judge_messages
from temporal_ray.miniature.rules import answer_key_score
from temporal_ray.miniature.tasks import (
    FAMILIES,
    KNOWN_FAMILIES,
    RUBRIC_SCORE,
    WORDS,
    Quality,
    Task,
    answer_key,
    corrupt,
    grade,
    is_correct,
    make_tasks,
    task_from_prompt,
)
from temporal_ray.miniature.toy_data import (
    build_toy_data,
    eft_rows,
    ift_rows,
    load_tasks,
    prompt_rows,
    split_tasks,
    write_jsonl,
)
from temporal_ray.stages.judge import load_rule

SCORE_PATTERN = r"Score:\s*(\d+(?:\.\d+)?)"
C, V, W, OFF = (Quality.CORRECT_CLEAN, Quality.CORRECT_VERBOSE, Quality.WRONG_ON_TOPIC,
              Quality.OFF_TOPIC)


def test_word_list_is_usable():
    assert 180 <= len(WORDS) <= 250
    assert len(set(WORDS)) == len(WORDS)
    assert all(w.isascii() and w.isalpha() and w.islower() and w != w[::-1] for w in WORDS)


def test_make_tasks_is_deterministic_distinct_and_balanced():
    a, b = make_tasks(400, seed=7), make_tasks(400, seed=7)
    assert a == b
    assert make_tasks(400, seed=8) != a
    assert len({t.prompt for t in a}) == 400
    assert Counter(t.family for t in a) == {f: 100 for f in FAMILIES}
    for t in a:
        assert t.answer and len(t.prompt) < 40


def test_make_tasks_runs_out_of_a_finite_family():
    assert len(make_tasks(len(WORDS), 0, families=["reverse"])) == len(WORDS)
    with pytest.raises(ValueError, match="distinct tasks"):
        make_tasks(len(WORDS) + 1, 0, families=["reverse"])
    many = make_tasks(1000, 0)  # reverse and count run out; add and sort fill the rest
    assert len({t.prompt for t in many}) == 1000


def test_make_tasks_does_not_touch_global_random():
    random.seed(123)
    expected = random.random()
    random.seed(123)
    make_tasks(50, 1)
    assert random.random() == expected


ADD = Task("add", "What is 23 + 58?", "81")
REV = Task("reverse", "Reverse the word: cable", "elbac")
SORT = Task("sort", "Sort the letters: dcab", "abcd")
COUNT = Task("count", "How many letters in: planet?", "6")

HAND_GRADED = [
    (ADD, "81", C), (ADD, " 81. ", C), (ADD, "81!\n", C),
    (ADD, "The answer is 81.", V), (ADD, "23 + 58 = 81", V), (ADD, "81, I think.", V),
    (ADD, "82", W), (ADD, "The answer is 79.", W), (ADD, "81 or 82", W),
    (ADD, "", OFF), (ADD, "hello there, nice to meet you.", OFF), (ADD, "eighty-one", OFF),
    (REV, "elbac", C), (REV, "Elbac.", C),
    (REV, "The word cable reversed is elbac.", V), (REV, "Sure, the answer is elbac.", V),
    (REV, "elbca", W), (REV, "cable", W), (REV, "The answer is elbxc.", W),
    (REV, "elbac, or maybe elbca", W), (REV, "banana", W),
    (REV, "   ", OFF), (REV, "i do not know.", OFF), (REV, "42", OFF),
    (SORT, "abcd", C), (SORT, "Sorted: abcd.", V), (SORT, "abdc", W), (SORT, "dcab", W),
    (SORT, "the sky is blue today.", OFF),
    (COUNT, "6", C), (COUNT, "The word planet has 6 letters.", V), (COUNT, "The answer is 6", V),
    (COUNT, "7", W), (COUNT, "It has 5 letters.", W), (COUNT, "planet", OFF),
    (COUNT, "see you later.", OFF),
]


@pytest.mark.parametrize("task,response,quality", HAND_GRADED)
def test_grade_by_hand(task, response, quality):
    assert grade(task, response) == quality
    assert is_correct(task, response) == (quality in (C, V))


def test_grade_with_a_bare_answer():
    assert grade("81", "81") == C
    assert grade("81", "The answer is 81.") == V
    assert grade("81", "23 + 58 = 81") == W  # no prompt: 23 and 58 look like rival answers
    assert grade("elbac", "elbca") == W
    assert grade("elbac", "see you later.") == OFF
    assert is_correct("6", "6.") and not is_correct("6", "7")


def test_corrupt_grades_back_for_many_seeds():
    tasks = make_tasks(200, 3)
    for seed in range(5):
        rng = random.Random(seed)
        for task in tasks:
            for quality in Quality:
                assert grade(task, corrupt(task, rng, quality)) == quality, (task, quality)


def test_wrong_answers_are_plausible():
    rng = random.Random(0)
    for _ in range(50):
        wrong = corrupt(ADD, rng, W).removeprefix("The answer is ").rstrip(".")
        assert 1 <= abs(int(wrong) - 81) <= 3
        word = corrupt(REV, rng, W).removeprefix("The answer is ").rstrip(".")
        assert len(word) == 5 and word != "elbac"


def test_rubric_scores_are_ordered():
    assert [RUBRIC_SCORE[q] for q in (C, V, W, OFF)] == [5, 4, 2, 0]


def test_ift_wrong_share_and_determinism():
    tasks = make_tasks(400, 1)
    rows = ift_rows(tasks, seed=2, wrong_share=0.3)
    assert rows == ift_rows(tasks, seed=2, wrong_share=0.3)
    assert rows != ift_rows(tasks, seed=3, wrong_share=0.3)
    key = answer_key(tasks)
    qualities = Counter(grade(key[r["prompt"]], r["response"]) for r in rows)
    assert qualities[OFF] == 0
    assert abs((qualities[W] + qualities[V]) / len(rows) - 0.3) < 0.01
    assert qualities[W] > 40 and qualities[V] > 40  # both kinds of flaw occur
    assert all(r["response"].strip() for r in rows)  # the SFT reader refuses empty text
    assert all(grade(key[r["prompt"]], r["response"]) == C
               for r in ift_rows(tasks, seed=2, wrong_share=0.0))


def test_eft_rows_are_judge_prompts_with_parseable_scores():
    tasks = make_tasks(203, 4)
    rows = eft_rows(tasks, seed=5)
    assert rows == eft_rows(tasks, seed=5)
    scores = Counter()
    for task, row in zip(tasks, rows):
        score = parse_judgement(row["response"], SCORE_PATTERN).score
        assert row["response"].endswith(f"Score: {int(score)}")
        scores[int(score)] += 1
        # The prompt is the judge's user turn for this task and some candidate ...
        head, tail = ADDITIVE_5_POINT_RUBRIC.split("{prompt}")
        assert row["prompt"].startswith(head + task.prompt)
        candidate = row["prompt"].split("<response>", 1)[1].rsplit("</response>", 1)[0]
        assert judge_messages(ADDITIVE_5_POINT_RUBRIC, task.prompt, candidate)[0]["content"] \
            == row["prompt"]
        # ... and the score is the rubric score of that candidate's true quality.
        assert score == RUBRIC_SCORE[grade(task, candidate)]
    assert set(scores) == {0, 2, 4, 5}
    assert max(scores.values()) - min(scores.values()) <= 1  # balanced shares
    # Quality does not follow the family round-robin of make_tasks.
    pairs = Counter((t.family, r["response"][-1]) for t, r in zip(tasks, rows))
    assert len(pairs) == 16


def test_eft_rows_with_a_custom_judge_template():
    template = "Q: {prompt}\nA: {response}\nScore it."
    row = eft_rows([ADD], seed=0, template=template)[0]
    assert row["prompt"].startswith("Q: What is 23 + 58?\nA: ")
    assert row["prompt"].endswith("\nScore it.")


def test_split_tasks_keeps_the_family_mix():
    tasks = make_tasks(1200, 0)
    splits = split_tasks(tasks, [600, 300, 200, 100])
    assert [len(s) for s in splits] == [600, 300, 200, 100]
    overall = Counter(t.family for t in tasks)
    for s in splits:
        mix = Counter(t.family for t in s)
        for family in FAMILIES:
            assert abs(mix[family] / len(s) - overall[family] / len(tasks)) < 0.03
        assert {t.family for t in s[:12]} == set(FAMILIES)  # original order: interleaved
        assert [tasks.index(t) for t in s] == sorted(tasks.index(t) for t in s)


def test_build_toy_data(tmp_path):
    paths = build_toy_data(tmp_path, seed=0, n_ift=120, n_eft=80, n_prompts=60, n_heldout=40)
    assert set(paths) == {"ift", "eft", "prompts", "heldout"}
    rows = {k: [json.loads(line) for line in open(p, encoding="utf-8")] for k, p in paths.items()}
    assert [len(rows[k]) for k in ("ift", "eft", "prompts", "heldout")] == [120, 80, 60, 40]
    task_prompts = {
        "ift": {r["prompt"] for r in rows["ift"]},
        "eft": {r["prompt"].split("User: ", 1)[1].split("\n\n<response>", 1)[0]
                for r in rows["eft"]},
        "prompts": {r["prompt"] for r in rows["prompts"]},
        "heldout": {r["prompt"] for r in rows["heldout"]},
    }
    assert sum(len(s) for s in task_prompts.values()) == 300
    assert len(set().union(*task_prompts.values())) == 300  # pairwise disjoint
    assert set(rows["heldout"][0]) == {"prompt_id", "prompt", "answer", "family"}
    assert {r["family"] for r in rows["heldout"]} == set(FAMILIES)
    assert len({r["prompt_id"] for r in rows["prompts"]}) == 60
    held = load_tasks(paths["heldout"])
    assert all(is_correct(t, t.answer) for t in held)
    again = build_toy_data(tmp_path / "again", 0, 120, 80, 60, 40)
    assert all(open(paths[k], "rb").read() == open(again[k], "rb").read() for k in paths)
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_write_jsonl_replaces_atomically(tmp_path):
    path = tmp_path / "sub" / "rows.jsonl"
    write_jsonl([{"a": 1}], path)
    write_jsonl(prompt_rows([ADD, REV]), path)
    assert [json.loads(line)["prompt"] for line in open(path)] == [ADD.prompt, REV.prompt]
    assert [p.name for p in path.parent.iterdir()] == ["rows.jsonl"]


def test_judge_check_rows_are_balanced_and_scored_by_the_rubric():
    from temporal_ray.miniature.toy_data import judge_check_rows

    tasks = make_tasks(40, seed=3)
    rows = judge_check_rows(tasks, seed=9)
    assert rows == judge_check_rows(tasks, seed=9)
    assert [r["prompt"] for r in rows] == [t.prompt for t in tasks]
    assert len({r["prompt_id"] for r in rows}) == 40
    assert Counter(r["true_score"] for r in rows) == {5: 10, 4: 10, 2: 10, 0: 10}
    for task, row in zip(tasks, rows):
        assert RUBRIC_SCORE[grade(task, row["response"])] == row["true_score"]


def test_sortd_tasks_sort_digit_strings_of_the_given_lengths():
    tasks = make_tasks(300, seed=2, families=["sortd"], digit_lengths=(3, 5))
    assert tasks == make_tasks(300, seed=2, families=["sortd"], digit_lengths=(3, 5))
    assert len({t.prompt for t in tasks}) == 300
    for t in tasks:
        digits = t.prompt.removeprefix("Sort the digits: ")
        assert digits.isdigit() and 3 <= len(digits) <= 5
        assert t.answer == "".join(sorted(digits)) != digits  # sorting changes it
    assert {len(t.answer) for t in tasks} == {3, 4, 5}
    with pytest.raises(ValueError, match="known: sortd"):
        make_tasks(3, 0, families=["sortx"])


def test_sortd_grading_and_corruptions():
    task = Task("sortd", "Sort the digits: 75517", "15577")
    assert grade(task, "15577") == C and grade(task, "15577.") == C
    assert grade(task, "Sorted: 15577.") == V
    assert grade(task, "75517 sorted is 15577") == V  # the input's digits are no rival
    for wrong in ("15757", "1557", "15578", "75517", "The answer is 1577."):
        assert grade(task, wrong) == W, wrong
    assert grade(task, "15577 or 15578") == W  # a hedge
    assert grade(task, "see you later.") == OFF
    rng = random.Random(0)
    wrongs = [corrupt(task, rng, W).removeprefix("The answer is ").rstrip(".")
              for _ in range(200)]
    kinds = Counter("echo" if w == "75517" else "dropped" if len(w) == 4
                    else "in order" if w == "".join(sorted(w)) else "shuffled" for w in wrongs)
    assert set(kinds) == {"echo", "dropped", "in order", "shuffled"}  # every kind of near miss
    assert all(w.isdigit() and w != "15577" for w in wrongs)


def test_eft_rows_follow_the_quality_weights():
    tasks = make_tasks(800, 4, families=["sortd"])
    rows = eft_rows(tasks, seed=5, weights=(1, 3, 2, 2))
    scores = Counter(int(parse_judgement(r["response"], SCORE_PATTERN).score) for r in rows)
    assert scores == {0: 100, 2: 300, 4: 200, 5: 200}
    with pytest.raises(ValueError, match="one non-negative weight per level"):
        eft_rows(tasks, seed=5, weights=(1, 1, 1))


def test_form_only_score_reads_the_form_and_never_the_answer():
    from temporal_ray.miniature.tasks import form_only_score

    task = Task("sortd", "Sort the digits: 75517", "15577")
    assert form_only_score(task, "15577") == form_only_score(task, "15757.") == 5
    assert form_only_score(task, "Sorted: 15577.") == form_only_score(task, "It is 1577.") == 4
    assert form_only_score(task, "i do not know.") == 0


def test_build_toy_data_with_the_sortd_family(tmp_path):
    paths = build_toy_data(tmp_path, 0, 40, 40, 10, 10, families=["sortd"],
                           digit_lengths=(4, 4), eft_weights=(0, 1, 0, 1))
    held = load_tasks(paths["heldout"])
    assert {t.family for t in held} == {"sortd"} and {len(t.answer) for t in held} == {4}
    eft = [json.loads(line)["response"] for line in open(paths["eft"], encoding="utf-8")]
    assert Counter(r[-1] for r in eft) == {"2": 20, "5": 20}


def test_every_family_s_task_is_read_back_from_its_prompt():
    for family in KNOWN_FAMILIES:
        for task in make_tasks(30, seed=4, families=[family]):
            assert task_from_prompt(task.prompt) == task
    with pytest.raises(ValueError, match="not a prompt of the synthetic domain"):
        task_from_prompt("Sort the colours: red blue")


def test_the_answer_key_rule_scores_by_the_rubric():
    prompt = "Sort the digits: 75517"
    assert [answer_key_score(prompt, r) for r in ("15577", "Sorted: 15577.", "15557", "hello")] == [
        RUBRIC_SCORE[q] for q in (Quality.CORRECT_CLEAN, Quality.CORRECT_VERBOSE,
                                  Quality.WRONG_ON_TOPIC, Quality.OFF_TOPIC)]
    assert load_rule("temporal_ray.miniature.rules:answer_key_score") is answer_key_score
