"""The command line's terminal options: --log-level, --verbose, --progress."""

import logging

import pytest

from temporal_ray import terminal
from temporal_ray.cli import _exit_code, build_parser, main


@pytest.fixture(autouse=True)
def default_terminal(monkeypatch):
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    yield
    terminal.configure()


@pytest.mark.parametrize("command", ["run", "sft", "miniature", "study", "eval"])
def test_every_command_that_runs_work_takes_the_terminal_options(command):
    parser = build_parser()
    args = parser.parse_args([command, "c.yaml"])
    assert (args.log_level, args.verbose, args.progress) == ("INFO", False, "auto")
    args = parser.parse_args([command, "c.yaml", "a.b=1", "--log-level", "debug", "--verbose",
                              "--progress", "log"])
    assert (args.log_level, args.verbose, args.progress) == ("DEBUG", True, "log")
    assert args.overrides == ["a.b=1"]


def test_a_bad_level_is_refused_and_commands_without_work_have_no_options(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "c.yaml", "--log-level", "LOUD"])
    assert "invalid choice: 'LOUD'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["status", "runs/x", "--verbose"])


def test_main_configures_the_terminal_before_the_work(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("model: {path: m}\ndata: {prompts: p}\n", encoding="utf-8")
    # An SFT without a base model stops before Ray starts: the set-up is all it did.
    code = main(["sft", str(config), "--log-level", "WARNING", "--verbose", "--progress",
                 "off"])
    assert code == 2 and "sft.base_model is not set" in capsys.readouterr().err
    assert terminal.settings() == terminal.Settings(logging.WARNING, True, "off")
    assert logging.getLogger("temporal_ray").level == logging.WARNING
    main(["status", str(tmp_path / "missing")])  # no options: the defaults again
    assert terminal.settings() == terminal.Settings()


def test_a_full_disk_is_one_line_and_exit_2_with_its_traceback_at_debug(capsys):
    def write() -> None:
        with open("/dev/full", "wb") as full:  # every write there fails with ENOSPC
            full.write(b"x")

    message = ("error: outside a stage: No space left on device writing a file of the run: "
               "free space on the file system it is on, then run the same command again to "
               "resume\n")
    terminal.configure("INFO")
    assert _exit_code(write) == 2
    assert capsys.readouterr().err == message
    terminal.configure("DEBUG")
    try:
        assert _exit_code(write) == 2
    finally:
        terminal.configure("INFO")
    shown = capsys.readouterr().err
    assert "Traceback" in shown and "OSError: [Errno 28]" in shown and shown.endswith(message)
    with pytest.raises(ValueError, match="not about room"):
        _exit_code(lambda: (_ for _ in ()).throw(ValueError("not about room")))
