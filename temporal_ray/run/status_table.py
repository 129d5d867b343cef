"""`temporal-ray status`'s table: a `RunStatus` (status.py) as lines a person reads at a
glance, parts indented under their run."""

from __future__ import annotations

from temporal_ray.run.status import RunStatus, StageStatus, ago, count_of, utc_clock


def format_status(status: RunStatus, root: str | None = None, indent: str = "") -> str:
    """The status as a table a person reads at a glance; parts follow, indented."""
    root = status.path if root is None else root
    name = status.path[len(root):].lstrip("/") or status.path
    what = f"method {status.method}, " if status.method else ""
    if status.planned_iterations is not None:
        what += f"{count_of(status.planned_iterations, 'iteration')}, "
    lines = [f"{indent}{name}: {status.state.upper()} ({what}{status.reason})"]
    if status.lock is not None:
        lock = status.lock
        health = "live" if lock.stale is None else f"stale: {lock.stale}"
        lines.append(f"{indent}  lock: {lock.host} pid {lock.pid}, last heartbeat "
                     f"{utc_clock(lock.beat)} UTC ({ago(lock.age)} ago), {health}")
    rows = [(str(it.index), s) for it in status.iterations for s in it.stages]
    rows += [("", s) for s in status.stages]
    if rows:
        lines += _table(rows, status.now, indent + "  ", with_iter=bool(status.iterations))
        lines.append(f"{indent}  {status.seconds():.1f} s in finished stages")
    if status.files:
        lines.append(f"{indent}  files: {', '.join(status.files)}")
    for part in status.parts:
        lines.append(format_status(part, root, indent + "  "))
    return "\n".join(lines)


def _table(rows: list[tuple[str, StageStatus]], now: float, indent: str,
           with_iter: bool) -> list[str]:
    width = max(len("stage"), *(len(s.name) + (not s.expected) for _, s in rows))
    head = f"{'iter':<5}" if with_iter else ""
    lines = [f"{indent}{head}{'stage':<{width}}  {'state':<11}  {'seconds':>8}  when (UTC)"]
    for iteration, stage in rows:
        name = stage.name if stage.expected else stage.name + "*"
        seconds = f"{stage.seconds:.1f}" if stage.seconds is not None else ""
        when = ""
        if stage.finished_at is not None:
            when = utc_clock(stage.finished_at, date=False)
        elif stage.started_at is not None:
            when = (f"started {utc_clock(stage.started_at, date=False)} "
                    f"({ago(now - stage.started_at)} ago)")
        if stage.progress:
            when += f"; {stage.progress}"
        iter_cell = f"{iteration:<5}" if with_iter else ""
        lines.append(f"{indent}{iter_cell}{name:<{width}}  {stage.state:<11}  {seconds:>8}  "
                     f"{when}".rstrip())
    if any(not s.expected for _, s in rows):
        lines.append(f"{indent}* not one of the method's stages (made after it, e.g. by an "
                     "analysis)")
    return lines
