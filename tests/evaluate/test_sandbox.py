"""The sandbox against hostile programs: each is stopped and named, nothing of it is left on the
machine, and the next program runs. Real processes and namespaces, no mocks."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid

import pytest

from temporal_ray.evaluate import sandbox
from temporal_ray.evaluate.sandbox import Isolation, Limits, Result, machine_isolation, run


def sandbox_processes(result: Result | None = None, token: str = "") -> list[int]:
    """Live processes of the uid a result ran as, or whose command line holds `token`."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            uid = os.stat(f"/proc/{entry}").st_uid
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, ValueError):
            continue
        if entry.isdigit() and ((result is not None and uid == result.uid) or
                                (token and token.encode() in cmdline)):
            found.append(int(entry))
    return found


def still_fine(result: Result) -> None:
    """The machine after a hostile program: nothing of it left, and a program still runs."""
    for _ in range(20):  # killed processes may take a moment to leave /proc
        if not sandbox_processes(result):
            break
        time.sleep(0.05)
    assert sandbox_processes(result) == []
    after = run("assert sum(range(10)) == 45")
    assert after.passed, after


@pytest.fixture(scope="module")
def isolation() -> Isolation:
    return machine_isolation()


def test_the_isolation_is_found_once_and_said(isolation):
    assert machine_isolation() is isolation
    assert "namespaces" in isolation.describe()
    if os.geteuid() == 0 and os.path.exists("/proc/self/ns/net"):  # as on this machine
        assert isolation == Isolation(namespaces=True, private_uid=True)


def test_a_program_that_writes_outside_its_directory_is_stopped(isolation, evaluator_file):
    if not isolation.private_uid:
        pytest.skip("without root the program runs as the evaluator's user (see sandbox.py)")
    target = evaluator_file
    code = ("import tempfile\n"
            "open('program-output.txt', 'w').write('its own directory is fine')\n"
            "tempfile.NamedTemporaryFile().write(b'so is a temporary file')\n"
            f"open({str(target)!r}, 'w').write('overwritten')\n")
    result = run(code)
    assert target.read_text() == "the evaluator's results"
    assert result.outcome == "permission" and str(target) in result.detail
    stray = f"/tmp/sandbox-stray-{uuid.uuid4().hex}"
    if isolation.namespaces:  # /tmp is its own tmpfs, and only its working directory is its
        assert run(f"open({stray!r}, 'w').write('x')\n").outcome == "permission"
        assert not os.path.exists(stray)
    still_fine(result)


def test_a_fork_bomb_is_stopped_at_its_process_limit(isolation):
    if os.geteuid() == 0 and not isolation.private_uid:
        pytest.skip("RLIMIT_NPROC does not bind root: never run a fork bomb that way")
    bomb = ("import os\nwhile True:\n    try:\n        os.fork()\n"
            "    except OSError:\n        pass\n")
    started = time.monotonic()
    result = run(bomb, Limits(timeout=2.0))
    assert result.outcome == "processes", result
    assert time.monotonic() - started < 10
    still_fine(result)


def test_a_10_gb_allocation_fails_at_once():
    started = time.monotonic()
    result = run("block = bytearray(10 * 1024 ** 3)\n")
    assert result.outcome == "memory" and result.detail == "MemoryError"
    assert time.monotonic() - started < 5
    still_fine(result)


def test_a_socket_reaches_nothing(isolation):
    """The guard stops `socket.socket`; with the network namespace, a raw `_socket` (what C
    code would use) reaches neither the host's loopback nor anything else."""
    guarded = run("import socket\nsocket.socket()\n")
    assert guarded.outcome == "network" and "disabled" in guarded.detail
    if not isolation.namespaces:
        pytest.skip("no network namespace here: only the Python guard holds")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        raw = run(f"import _socket\ns = _socket.socket()\ns.connect(('127.0.0.1', {port}))\n")
        assert raw.outcome == "network", raw
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
    still_fine(raw)


def test_processes_left_behind_are_killed():
    """A daemon in its own session outlives a program that passed; a child outlives one
    that timed out: both are killed."""
    token = uuid.uuid4().hex
    sleeper = f"import time; time.sleep(60)  # {token}"
    daemon = ("import os, subprocess, sys\n"
              f"subprocess.Popen([sys.executable, '-c', {sleeper!r}], start_new_session=True)\n")
    passed = run(daemon)
    assert passed.passed
    loop = f"import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', {sleeper!r}])\n"
    timed_out = run(loop + "while True:\n    pass\n", Limits(timeout=1.0))
    assert timed_out.outcome == "timeout"
    time.sleep(0.2)
    assert sandbox_processes(token=token) == []
    still_fine(passed)
    still_fine(timed_out)


def test_without_namespaces_the_guard_limits_and_session_still_hold(tmp_path):
    """The fallback where a machine refuses namespaces (forced here; as root it runs as root,
    so no fork bomb): a fresh working directory, the socket guard, memory and time limits,
    and its session killed at the end."""
    fallback = Isolation(namespaces=False, private_uid=False)
    assert run("import os\nassert os.listdir('.') == ['program.py']\n", isolation=fallback).passed
    assert run("import socket\nsocket.create_connection(('127.0.0.1', 9))\n",
               isolation=fallback).outcome == "network"
    assert run("bytearray(10 * 1024 ** 3)\n", isolation=fallback).outcome == "memory"
    token = uuid.uuid4().hex
    sleeper = f"import time; time.sleep(60)  # {token}"
    code = f"import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', {sleeper!r}])\n"
    assert run(code + "while True:\n    pass\n", Limits(timeout=1.0),
               fallback).outcome == "timeout"
    time.sleep(0.2)
    assert sandbox_processes(token=token) == []


def test_a_file_past_the_size_limit_fails():
    result = run("open('big.bin', 'wb').write(bytes(2 * 1024 ** 2))\n",
                 Limits(file_bytes=1024 ** 2))
    assert result.outcome == "disk" and "File too large" in result.detail


NON_ROOT = """\
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("sandbox", sys.argv[1])
sandbox = sys.modules["sandbox"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sandbox)
programs = ["import _socket\\n_socket.socket().connect(('1.1.1.1', 53))",
            "bytearray(10 * 1024 ** 3)",
            "import os\\nwhile True:\\n    try:\\n        os.fork()\\n    except OSError:\\n"
            "        pass\\n"]
limits = sandbox.Limits(timeout=2.0)
print(json.dumps([sandbox.machine_isolation().namespaces]
                 + [sandbox.run(code, limits).outcome for code in programs]))
"""


def test_without_root_a_user_namespace_holds():
    """What CI and most users get: run as an unprivileged user (nobody, with a system Python
    that it can run; sandbox.py needs only the standard library), the sandbox uses a user
    namespace, and the raw socket, the 10 GB allocation and the fork bomb are all stopped."""
    python = shutil.which("python3", path="/usr/bin:/bin")
    if os.geteuid() != 0 or not python or not shutil.which("setpriv"):
        pytest.skip("needs root, setpriv and a system python3 to become an unprivileged user")
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python]
    if subprocess.run([*as_nobody, "-c", "import os"], cwd="/").returncode != 0:
        pytest.skip("the unprivileged user cannot run the system python3 here")
    done = subprocess.run([*as_nobody, "-c", NON_ROOT, sandbox.__file__], cwd="/",
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    namespaces, *outcomes = json.loads(done.stdout)
    if not namespaces:
        pytest.skip("this kernel refuses unprivileged user namespaces")
    assert outcomes == ["network", "memory", "processes"]
