"""The terminal: what a command prints, and how it tells a user how far it is.

- `configure(level, verbose, progress)`: the one place that sets up logging, called by the CLI
  for the commands that run work. The package logs through module loggers
  (`logging.getLogger(__name__)`, all under `temporal_ray`); their records go to stderr, an
  INFO record as its bare message, a WARNING or worse with its level ("warning: ..."). Other
  libraries' loggers are left as they are; Ray's own are quieted where Ray starts
  (run/session.py), unless `verbose`.
- `echo(text)`: a command's own output (stage lines, summaries, a report's path), on stdout.
- `Progress`: a bar with an ETA on stderr where stderr is a terminal; elsewhere (a log file,
  CI) a plain log line at each tenth of the work, at most one every `min_interval_s`, so a
  redirected run shows its progress at a sane rate.

Both kinds of line go through `tqdm.write`, so a line never cuts a bar in half. The settings
are the process's, like logging's own: set once by `configure`; a caller that never calls it
(a test, a library user) gets the defaults. Imports nothing of the package: every floor may
use it.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from tqdm import tqdm

PACKAGE = "temporal_ray"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
PROGRESS_MODES = ("auto", "bar", "log", "off")
"""auto: a bar where stderr is a terminal, log lines elsewhere; bar or log: forced; off."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    level: int = logging.INFO
    verbose: bool = False
    """Ray's own INFO lines, its progress bars and every worker's output (with its
    `(pid=..., ip=...)` prefix) on the driver's terminal, as Ray prints them by default."""
    progress: str = "auto"


_settings = Settings()


def settings() -> Settings:
    return _settings


class _Formatter(logging.Formatter):
    """INFO as the bare message (what the prints were); other levels named."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno == logging.INFO else f"{record.levelname.lower()}: {text}"


class _Handler(logging.Handler):
    """To the current sys.stderr (a test may have swapped it since), beside the bars."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 (logging's own contract: report, never raise)
            self.handleError(record)


def configure(level: int | str = logging.INFO, verbose: bool = False,
              progress: str = "auto") -> Settings:
    """Set up the package's logging (replacing an earlier set-up) and the terminal's
    settings; returns them."""
    global _settings
    if progress not in PROGRESS_MODES:
        raise ValueError(f"progress must be one of {PROGRESS_MODES}, not {progress!r}")
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}: one of {', '.join(LEVELS)}")
    _settings = Settings(numeric, verbose, progress)
    package = logging.getLogger(PACKAGE)
    for old in [h for h in package.handlers if isinstance(h, _Handler)]:
        package.removeHandler(old)
    handler = _Handler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
                         if verbose else _Formatter("%(message)s"))
    package.addHandler(handler)
    package.setLevel(numeric)
    package.propagate = False
    if not verbose:
        # transformers' and the Hub's own bars in the driver (a model written or loaded)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    return _settings


def echo(text: str) -> None:
    """A command's own output: to stdout, clearing any bar first."""
    tqdm.write(text, file=sys.stdout)
    sys.stdout.flush()


def progress_mode(mode: str | None = None) -> str:
    """bar, log or off: `mode` (default: the configured one) with auto resolved."""
    mode = mode or _settings.progress
    if mode == "auto":
        return "bar" if sys.stderr.isatty() else "log"
    return mode


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    """How far one piece of work is: `done` of `total` units (total None: not known yet).

    A tqdm bar on stderr (it goes when the work ends: the stage's line follows), or in log
    mode a line at each `every` of the work crossed, at most one every `min_interval_s`, none
    in the first `min_interval_s` (short work says nothing) and none at the end (the stage's
    line says that): at most 1/every - 1 lines, however many updates."""

    def __init__(self, label: str, total: int | None = None, unit: str = "rows", *,
                 initial: int = 0, mode: str | None = None, every: float = 0.1,
                 min_interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 log: Callable[[str], None] | None = None) -> None:
        """`initial`: units done before this began (a training job watched after its first
        steps): counted as done, but not in the pace the ETA assumes."""
        self.label, self.total, self.unit = label, total, unit
        self.mode = progress_mode(mode)
        self.every, self.min_interval_s = every, min_interval_s
        self.clock = clock
        self.log = log or logger.info
        self.done = self.initial = initial
        self.started = self._last_line = clock()
        self._logged_tenth = 0
        self.bar: Any = None
        if self.mode == "bar":
            self.bar = tqdm(total=total, initial=initial, desc=label, unit=f" {unit}",
                            file=sys.stderr, leave=False, dynamic_ncols=True, mininterval=0.5)

    def update(self, n: int) -> None:
        """`n` more units done."""
        self.advance_to(self.done + n)

    def advance_to(self, done: int, total: int | None = None) -> None:
        """`done` units done so far (of `total`, when it is learnt now)."""
        if total is not None and total != self.total:
            self.total = total
            if self.bar is not None:
                self.bar.total = total
        step, self.done = done - self.done, done
        if self.bar is not None:
            self.bar.update(step)
        elif self.mode == "log":
            self._maybe_log()

    def _maybe_log(self) -> None:
        now = self.clock()
        if now - self._last_line < self.min_interval_s:
            return
        if self.total:
            if self.done >= self.total:
                return
            mark = math.floor(self.done / self.total / self.every + 1e-9)
            if mark <= self._logged_tenth:
                return
            self._logged_tenth = mark
        self._last_line = now
        self.log(self.line(now))

    def line(self, now: float | None = None) -> str:
        """`label: done/total unit (p%) in elapsed, about ETA left`."""
        elapsed = (self.clock() if now is None else now) - self.started
        if not self.total:
            return f"{self.label}: {self.done} {self.unit} in {_duration(elapsed)}"
        text = (f"{self.label}: {self.done}/{self.total} {self.unit} "
                f"({self.done / self.total:.0%}) in {_duration(elapsed)}")
        if self.done > self.initial:
            left = elapsed / (self.done - self.initial) * (self.total - self.done)
            text += f", about {_duration(left)} left"
        return text

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
