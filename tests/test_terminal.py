"""The terminal: the package's logging set-up, output lines and progress (bars and log lines)."""

import logging

import pytest

from temporal_ray import terminal
from temporal_ray.terminal import Progress


@pytest.fixture(autouse=True)
def default_terminal(monkeypatch):
    """Each test starts from, and leaves, the CLI's default set-up (and the environment as
    it found it: configure turns the Hub's bars off)."""
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    terminal.configure()
    yield
    terminal.configure()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_info_is_the_bare_message_and_a_warning_says_so_on_stderr(capsys):
    log = logging.getLogger("temporal_ray.run.driver")
    log.info("kept pool started")
    log.warning("prompts dropped: %s", 3)
    log.debug("not shown at INFO")
    terminal.echo("final model: m")
    out, err = capsys.readouterr()
    assert err.splitlines() == ["kept pool started", "warning: prompts dropped: 3"]
    assert out == "final model: m\n"  # a command's output stays on stdout


def test_the_level_filters_the_package_and_configure_replaces_its_handler(capsys):
    terminal.configure("warning")
    terminal.configure("WARNING")  # again: still one handler
    log = logging.getLogger("temporal_ray.engines.kept_pool")
    log.info("hidden")
    log.warning("shown")
    assert capsys.readouterr().err.splitlines() == ["warning: shown"]
    package = logging.getLogger("temporal_ray")
    assert sum(isinstance(h, terminal._Handler) for h in package.handlers) == 1
    assert terminal.settings() == terminal.Settings(logging.WARNING, False, "auto")
    terminal.configure("DEBUG", verbose=True)
    log.debug("now shown, with its time and logger")
    err = capsys.readouterr().err
    assert "DEBUG temporal_ray.engines.kept_pool: now shown" in err
    with pytest.raises(ValueError, match="unknown log level"):
        terminal.configure("LOUD")


def log_mode(total, clock, lines, **kwargs):
    return Progress("judging", total, "judgements", mode="log", clock=clock,
                    log=lines.append, **kwargs)


def test_a_long_piece_of_work_logs_a_line_per_tenth_with_an_eta():
    clock, lines = Clock(), []
    bar = log_mode(10_000, clock, lines)
    for _ in range(10_000):  # 1,000 s of work in 10,000 updates
        clock.now += 0.1
        bar.update(1)
    bar.close()
    assert len(lines) == 9  # 10% .. 90%: the stage's own line says when it is done
    assert lines[0] == "judging: 1000/10000 judgements (10%) in 100 s, about 15 min 00 s left"
    assert lines[-1].startswith("judging: 9000/10000 judgements (90%) in 15 min 00 s")


def test_short_work_says_nothing_and_fast_progress_is_rate_limited():
    clock, lines = Clock(), []
    bar = log_mode(100, clock, lines)
    for _ in range(100):  # done in 5 s: under min_interval_s
        clock.now += 0.05
        bar.update(1)
    assert lines == []
    # 30 s of work: a tenth every 3 s, but at most one line every 10 s.
    clock, lines = Clock(), []
    bar = log_mode(100, clock, lines)
    for _ in range(100):
        clock.now += 0.3
        bar.update(1)
    assert len(lines) == 2


def test_unknown_total_logs_counts_at_most_every_interval_and_learns_the_total():
    clock, lines = Clock(), []
    bar = log_mode(None, clock, lines, min_interval_s=10)
    for _ in range(60):
        clock.now += 1
        bar.update(2)
    assert lines[0] == "judging: 20 judgements in 10 s" and len(lines) == 6
    bar.advance_to(120, total=240)  # a training job: the total comes with the first record
    clock.now += 10
    bar.advance_to(150)
    assert lines[-1].startswith("judging: 150/240 judgements (62%)")


def test_bar_mode_draws_on_stderr_and_leaves_no_bar_behind(capsys):
    with Progress("generating (present)", 4, "rows", mode="bar") as bar:
        bar.update(2)
        bar.update(2)
    out, err = capsys.readouterr()
    assert out == "" and "generating (present)" in err
    # Off: nothing at all; auto under pytest (stderr is no terminal): log lines.
    with Progress("x", 4, mode="off") as bar:
        bar.update(4)
    assert capsys.readouterr() == ("", "")
    assert terminal.progress_mode() == "log"


def test_work_done_before_watching_counts_as_done_but_not_in_the_pace():
    # A training job first seen at step 50 of 100 (its record lags the start).
    clock, lines = Clock(), []
    bar = log_mode(100, clock, lines, initial=50)
    clock.now = 10
    bar.advance_to(60)
    assert lines == ["judging: 60/100 judgements (60%) in 10 s, about 40 s left"]
