"""The sandbox's launcher: the child side of sandbox.py, run as `python -I -S sandbox_launch.py
<settings JSON>` with the program's source on stdin. Standard library only, and never
imported: under -I the package is not on sys.path.

It enters the namespaces it was asked for, forks the program's process (pid 1 of the new pid
namespace, if any), which makes its own /tmp, drops to the private uid, sets its limits and
execs `python -I program.py`; then it waits, kills what is left on timeout and at the end,
and prints one JSON line: {"exit": n} | {"signal": n} | {"timeout": true} | {"error": text}.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import select
import signal
import sys
from typing import Any

CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG = 1
# Unused uids: each launcher's program runs as UID_BASE + the launcher's pid, which no other
# process on the machine has, so its process count and the final kill touch only its own.
UID_BASE = 2_000_000_000

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str, target: str, fstype: str, flags: int, data: str = "") -> None:
    _check(_libc.mount(source.encode(), target.encode(), fstype.encode(), flags,
                       data.encode() or None), f"mount {fstype} on {target}")


def enter_namespaces() -> None:
    """New network, mount and pid namespaces; without root, inside a new user namespace whose
    uid 0 is the caller (the program then runs as the caller)."""
    flags = CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID
    if os.geteuid() == 0:
        _check(_libc.unshare(flags), "unshare")
        return
    uid, gid = os.geteuid(), os.getegid()
    _check(_libc.unshare(flags | CLONE_NEWUSER), "unshare (user namespace)")
    for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"),
                       ("gid_map", f"0 {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def own_filesystem(uid: int | None, tmp_bytes: int) -> tuple[str, str, bool]:
    """Inside the mount namespace: an empty private tmpfs on /tmp, whose `work` directory is
    the working directory, on /var/tmp and on /dev/shm, and a /proc of the new pid namespace
    (not where the kernel refuses that mount: the host's /proc then stays visible). The
    interpreter's installation is bound read-only at /tmp/python: a private uid may not reach
    its real path (one under /root, say), and the new /tmp hides one under /tmp. Returns
    (working directory, interpreter, whether /proc is its own)."""
    _mount("none", "/", "", MS_REC | MS_PRIVATE)
    # Found before the new /tmp covers them: the interpreter and its installation may live
    # under /tmp (a clone there, its virtualenv's link to the real interpreter).
    real_python = os.path.realpath(sys.executable)
    prefix = os.path.realpath(sys.base_prefix)
    prefix_fd = os.open(prefix, os.O_PATH | os.O_DIRECTORY)
    for target, size in (("/tmp", tmp_bytes), ("/var/tmp", 1 << 20), ("/dev/shm", 1 << 20)):
        if os.path.isdir(target):
            owner = "" if uid is None else f",uid={uid},gid={uid}"
            mode = "0755" if target == "/tmp" else "0700"
            _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV,
                   f"size={size},mode={mode}{owner if target != '/tmp' else ''}")
    os.mkdir("/tmp/work", 0o700)
    if uid is not None:
        os.chown("/tmp/work", uid, uid)
    os.mkdir("/tmp/python")
    _mount(f"/proc/self/fd/{prefix_fd}", "/tmp/python", "", MS_BIND | MS_REC)
    _mount("none", "/tmp/python", "", MS_BIND | MS_REMOUNT | MS_RDONLY)
    os.close(prefix_fd)
    python = os.path.join("/tmp/python", os.path.relpath(real_python, prefix))
    try:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:
        return "/tmp/work", python, False
    return "/tmp/work", python, True


def user_processes(uid: int | None) -> int:
    """Processes the uid has now (all processes: None), as /proc shows them; without a
    private uid, RLIMIT_NPROC counts them too."""
    count = 0
    for entry in os.listdir("/proc"):
        try:
            count += entry.isdigit() and (uid is None or os.stat(f"/proc/{entry}").st_uid == uid)
        except OSError:
            continue
    return count


def set_limits(cfg: dict[str, Any], uid: int | None, own_pids: bool) -> None:
    cpu = cfg["cpu_seconds"]
    processes = cfg["processes"]
    if uid is None and not own_pids:
        processes += user_processes(os.getuid())
    for limit, value in ((resource.RLIMIT_CPU, (cpu, cpu + 1)),
                         (resource.RLIMIT_AS, (cfg["memory_bytes"],) * 2),
                         (resource.RLIMIT_FSIZE, (cfg["file_bytes"],) * 2),
                         (resource.RLIMIT_NPROC, (processes,) * 2),
                         (resource.RLIMIT_CORE, (0, 0))):
        resource.setrlimit(limit, value)


def start_program(cfg: dict[str, Any], uid: int | None, code: bytes, report: int) -> None:
    """In the forked child: its own session, working directory, limits and uid, then exec.
    Writes what it could not do to `report` (closed on exec) and exits 125."""
    try:
        os.setsid()
        notes, python = {"own_proc": False}, sys.executable
        if cfg["namespaces"]:
            workdir, python, notes["own_proc"] = own_filesystem(uid, cfg["tmp_bytes"])
        else:
            workdir = cfg["workdir"]
            if uid is not None:
                os.chown(workdir, uid, uid)
        path = os.path.join(workdir, "program.py")
        with open(path, "wb") as f:
            f.write(code)
        if uid is not None:
            os.chown(path, uid, uid)
        os.chdir(workdir)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        set_limits(cfg, uid, cfg["namespaces"])
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        # After setuid, which clears it: the program dies with the launcher.
        _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
        os.write(report, json.dumps(notes).encode() + b"\n")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONHASHSEED": "0",
               "HOME": workdir, "TMPDIR": workdir}
        if python != sys.executable:  # its libpython may be found by an absolute RUNPATH
            env["LD_LIBRARY_PATH"] = os.path.join(os.path.dirname(os.path.dirname(python)),
                                                  "lib")
        os.execve(python, [python, "-I", "program.py"], env)
    except BaseException as error:  # noqa: BLE001 - anything here is a setup failure
        text = json.dumps({"error": f"{type(error).__name__}: {error}"})
        os.write(report, text.encode() + b"\n")
        os._exit(125)


def kill_everything(pid: int, uid: int | None, namespaces: bool) -> None:
    """The program and every process it left: in a pid namespace, killing its pid 1 kills the
    namespace; with a private uid, a process of that uid kills all of them (kill -1), those
    that left the session too; otherwise the program's session."""
    if namespaces:
        os.kill(pid, signal.SIGKILL)
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if uid is None:
        return
    killer = os.fork()
    if killer == 0:
        try:
            os.setgid(uid)
            os.setuid(uid)
            for _ in range(100):  # a fork bomb may fork while it is swept
                os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            os._exit(0)
        os._exit(1)
    os.waitpid(killer, 0)


def supervise(pid: int, timeout: float, uid: int | None, namespaces: bool,
              own_proc: bool) -> dict[str, Any]:
    pidfd = os.pidfd_open(pid)
    poll = select.poll()
    poll.register(pidfd, select.POLLIN)
    timed_out = not poll.poll(timeout * 1000)
    os.close(pidfd)
    at_timeout = 0
    if timed_out and (own_proc or uid is not None):  # /proc: the pid namespace's, if its own
        at_timeout = user_processes(None if own_proc else uid)
    if timed_out:
        kill_everything(pid, uid, namespaces)
    _, status = os.waitpid(pid, 0)
    if not namespaces:  # in a pid namespace, the kernel already killed the rest with pid 1
        kill_everything(pid, uid, namespaces)
    if timed_out:  # how many processes it had then: a fork bomb sits at its limit
        return {"timeout": True, "processes": at_timeout}
    if os.WIFSIGNALED(status):
        return {"signal": os.WTERMSIG(status)}
    return {"exit": os.WEXITSTATUS(status)}


def main() -> None:
    cfg = json.loads(sys.argv[1])
    code = sys.stdin.buffer.read()
    uid = UID_BASE + os.getpid() if cfg["private_uid"] else None
    try:
        if cfg["namespaces"]:
            enter_namespaces()
    except OSError as error:
        print(json.dumps({"error": str(error)}), flush=True)
        return
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        start_program(cfg, uid, code, write_end)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:  # closed by the exec, or the setup's error
        notes = {k: v for line in f.read().splitlines() for k, v in json.loads(line).items()}
    if "error" in notes:
        os.waitpid(pid, 0)
        print(json.dumps(notes), flush=True)
        return
    result = supervise(pid, cfg["timeout"], uid, cfg["namespaces"], notes["own_proc"])
    print(json.dumps({**result, **notes, "uid": uid}), flush=True)


if __name__ == "__main__":
    main()
