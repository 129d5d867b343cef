"""Run one untrusted Python program under limits, and say how it ended.

In:  the program's source, Limits. Out: Result(outcome, detail): passed (exit 0) | failed |
     timeout | memory | processes | disk | network | permission | sandbox (could not start).
     The cause is read from the last line of stderr (timeout and processes from the
     launcher), so it names the likely cause; only `passed` decides anything.

What it isolates, where the machine allows it (machine_isolation() finds out once per
process, and logs it). The launcher (sandbox_launch.py) does the work in a child process:
- Network: new network namespace, with only its own loopback, down: no socket reaches the
  host or the internet, from C code or child processes too. A Python guard that makes
  `socket.socket`, `create_connection` and `getaddrinfo` raise comes first in every mode;
  without the namespace it is the only layer, and C code or a child process gets past it.
- Files: with the namespaces, /tmp is a private tmpfs (64 MiB) that holds only its working
  directory /tmp/work (also TMPDIR and HOME) and, read-only, the interpreter; /var/tmp and
  /dev/shm are private too; all of it goes when the program ends, and the host's /tmp is out
  of sight. As root, the program runs as an unused uid (2,000,000,000 + the launcher's pid)
  with no groups: it cannot write any file that is not world-writable, the evaluator's
  included. Without namespaces, the working directory is a fresh empty temporary directory,
  removed afterwards, and world-writable directories such as the host's /tmp stay writable.
  Without root (in a user namespace), it runs as the evaluator's user and can write that
  user's files.
- Processes: with the namespaces, a pid namespace whose pid 1 is the program, with its own
  /proc: it cannot name, so cannot signal, any process outside, and when it ends or times
  out the kernel kills every process it started. Otherwise its
  session is killed, and with the private uid every process of that uid (those that left the
  session too). RLIMIT_NPROC bounds its processes and threads at once (not for root without
  a private uid: there a fork bomb runs until the timeout).
- Limits: wall time (then everything is killed), CPU time, address space per process (a
  10 GB allocation fails at once with MemoryError; 8 processes of 1 GiB by default, so 8 GiB
  at worst), file size, no core files. stdin and stdout are
  /dev/null; the last 4 KiB of stderr give the detail.

What it does not isolate: it is not a container or a VM. The kernel is shared; the program
can read every world-readable file (the package, a model's files where they are
world-readable); without the pid namespace's /proc it sees the host's process list; its CPU
and memory use count against the machine until the limits stop it. A program that exits 0
before its tests run passes: `passed` means only that the process exited 0.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

logger = logging.getLogger(__name__)

LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_launch.py")

# Runs before the program, in every mode: the first layer of "no network".
GUARD = """\
import socket as _socket_module
def _no_network(*args, **kwargs):
    raise PermissionError("network access is disabled in the sandbox")
class _NoNetwork(_socket_module.socket):
    __init__ = _no_network
_socket_module.socket = _NoNetwork
_socket_module.create_connection = _no_network
_socket_module.getaddrinfo = _no_network
del _socket_module, _no_network, _NoNetwork
"""


@dataclass(frozen=True)
class Limits:
    timeout: float = 5.0
    """Wall-clock seconds; CPU time is limited to the same, rounded up."""
    memory_bytes: int = 1 << 30
    file_bytes: int = 16 << 20
    processes: int = 8
    """Processes and threads at once, the program's own included. Each may use memory_bytes:
    their product is what a program can take from the machine at worst."""
    tmp_bytes: int = 64 << 20


@dataclass(frozen=True)
class Isolation:
    namespaces: bool
    """Network, mount and pid namespaces (a user namespace as well, without root)."""
    private_uid: bool
    """The program runs as an unused uid (needs root)."""

    def describe(self) -> str:
        parts = ["network, mount and pid namespaces: no network, a private /tmp, every "
                 "process killed at the end" if self.namespaces else
                 "no namespaces (the machine refuses them): the Python socket guard only, a "
                 "temporary working directory, the session killed at the end"]
        parts.append("an unused uid with no groups" if self.private_uid else
                     "the evaluator's own user")
        return "; ".join(parts)


@dataclass(frozen=True)
class Result:
    outcome: str
    detail: str = ""
    uid: int | None = None
    """The unused uid it ran as (None without one): no process of it is left."""

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"


def _launch(code: str, limits: Limits, isolation: Isolation) -> tuple[dict[str, Any], str]:
    """The launcher's report and the tail of the program's stderr."""
    cpu = max(1, int(limits.timeout + 0.999))
    with tempfile.TemporaryDirectory(prefix="sandbox-") as workdir, \
            tempfile.TemporaryFile() as stderr:
        cfg = {"namespaces": isolation.namespaces, "private_uid": isolation.private_uid,
               "workdir": workdir, "timeout": limits.timeout, "cpu_seconds": cpu,
               "memory_bytes": limits.memory_bytes, "file_bytes": limits.file_bytes,
               "processes": limits.processes, "tmp_bytes": limits.tmp_bytes}
        proc = subprocess.Popen([sys.executable, "-I", "-S", LAUNCHER, json.dumps(cfg)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                start_new_session=True)
        try:  # the launcher enforces the timeout; this only guards against a stuck launcher
            out, _ = proc.communicate((GUARD + code).encode(), timeout=limits.timeout + 30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.communicate()
            out = b'{"timeout": true}'
        lines = out.decode("utf-8", "replace").strip().splitlines()
        report = json.loads(lines[-1]) if lines else {
            "error": f"the launcher exited {proc.returncode} without a report"}
        size = stderr.seek(0, os.SEEK_END)
        stderr.seek(max(0, size - 4096))
        return report, stderr.read().decode("utf-8", "replace")


# The last line of stderr names what stopped the program (checked in this order).
_CAUSES = [
    ("network", re.compile(r"network access is disabled|Network is unreachable|gaierror|"
                           r"name resolution|Name or service not known|ConnectionRefused")),
    ("memory", re.compile(r"^MemoryError|Cannot allocate memory|Unable to allocate")),
    ("processes", re.compile(r"Resource temporarily unavailable|can't start new thread")),
    ("disk", re.compile(r"File too large|No space left on device|Disk quota exceeded")),
    ("permission", re.compile(r"^PermissionError|Read-only file system|Operation not "
                              r"permitted")),
]


def classify(report: dict[str, Any], stderr: str, limits: Limits) -> Result:
    lines = stderr.strip().splitlines()
    last = lines[-1] if lines else ""
    if "error" in report:
        return Result("sandbox", f"the sandbox could not start the program: {report['error']}")
    if report.get("timeout") and report.get("processes", 0) >= limits.processes - 1:
        return Result("processes", f"{report['processes']} processes (the limit is "
                                   f"{limits.processes}) when the time ran out; all killed")
    if report.get("timeout"):
        return Result("timeout", "no result in time; every process it started was killed")
    if report.get("exit") == 0:
        return Result("passed")
    if report.get("signal") in (9, 24):  # SIGKILL at the hard CPU limit, SIGXCPU at the soft
        return Result("timeout", f"CPU time limit (signal {report['signal']})")
    for outcome, pattern in _CAUSES:
        if pattern.search(last):
            return Result(outcome, last)
    return Result("failed", last or f"exited with {report}")


def run(code: str, limits: Limits = Limits(), isolation: Isolation | None = None) -> Result:
    """Run `code` as a program in the sandbox (the isolation this machine allows, by default);
    it never raises for what the program does."""
    report, stderr = _launch(code, limits, isolation or machine_isolation())
    return replace(classify(report, stderr, limits), uid=report.get("uid"))


@lru_cache(maxsize=1)
def machine_isolation() -> Isolation:
    """The strongest isolation this machine allows, tried once per process (a program that
    only says `pass`): namespaces and a private uid (the uid only as root)."""
    root = os.geteuid() == 0
    tried = []
    for namespaces in (True, False):
        for private_uid in ((True, False) if root else (False,)):
            isolation = Isolation(namespaces, private_uid)
            report, stderr = _launch("pass", Limits(timeout=30), isolation)
            if report.get("exit") == 0:
                logger.info("sandbox: %s", isolation.describe())
                if namespaces and not report.get("own_proc"):
                    logger.warning("sandbox: the kernel refused a /proc of the program's own: "
                                   "it sees the host's processes (it still cannot signal them)")
                if tried:
                    logger.warning("sandbox: weaker isolation than the best, because %s",
                                   "; ".join(tried))
                return isolation
            tried.append(f"{isolation.describe()} failed: {report.get('error') or stderr}")
    raise RuntimeError("the sandbox cannot start a program on this machine: "
                       + " | ".join(tried))
