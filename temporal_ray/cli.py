"""`temporal-ray`: the command line.

    temporal-ray run CONFIG [section.field=value ...] [--force] [--until STAGE] [--redo STAGE]
    temporal-ray sft CONFIG [overrides ...] [--force]     M0 = SFT(sft.base_model, sft.data)
    temporal-ray miniature CONFIG [overrides ...] [--force]   the paper in miniature (make run)
    temporal-ray study CONFIG [overrides ...] [--seeds N] [--out DIR] [--force]
                                    the miniature over N seeds, with intervals (make study)
    temporal-ray eval CONFIG [overrides ...] [--force]   checkpoints vs M0: win rates, HumanEval
    temporal-ray plan CONFIG [overrides ...] [--stage dpo|sft]   per-GPU memory, before a job
    temporal-ray serve CHECKPOINT [--name N] [--port P] [--engine hf|vllm] [--device D]
                              [--api-key-env NAME] [--max-batch-size B] [--batch-wait-timeout-s S]
                                                            OpenAI API
    temporal-ray prepare-data --oasst DIR --ultrafeedback DIR --out DIR [--force] [options]
                                    IFT, EFT and the iterations' prompt files from the datasets
    temporal-ray tiny-model OUT_DIR
    temporal-ray show-config CONFIG [overrides ...]
    temporal-ray status RUN_DIR [--json]   stages finished, running and remaining; the lock

The commands that run work (run, sft, miniature, study, eval, prepare-data) take --log-level
(DEBUG|INFO|WARNING|ERROR, default INFO: stage lines, progress and warnings), --verbose (Ray's
own INFO lines, its progress bars and every worker's output, prefixed `(pid=..., ip=...)`) and
--progress (auto|bar|log|off; auto: a bar with an ETA where stderr is a terminal, else a log
line at each tenth of the work).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from temporal_ray import terminal
from temporal_ray.config import ConfigError, load_config
from temporal_ray.core.prompts import PromptFileError
from temporal_ray.miniature.config import MiniatureRunConfig

logger = logging.getLogger(__name__)

RESUME_HELP = "resume even though the config differs from the run directory's"


def _config_command(commands: argparse._SubParsersAction, name: str, summary: str,
                    force_help: str | None = None,
                    overrides_help: str | None = None) -> argparse.ArgumentParser:
    """A sub-command that reads CONFIG [overrides ...], with --force where it resumes."""
    command = commands.add_parser(name, help=summary)
    command.add_argument("config")
    command.add_argument("overrides", nargs="*", help=overrides_help)
    if force_help:
        command.add_argument("--force", action="store_true", help=force_help)
    return command


def _add_terminal_options(command: argparse.ArgumentParser) -> None:
    """--log-level, --verbose and --progress (terminal.py), for a command that runs work."""
    command.add_argument("--log-level", type=str.upper, choices=terminal.LEVELS,
                         default="INFO", help="the package's messages from this level on "
                                              "(default INFO: stage lines, progress, warnings)")
    command.add_argument("--verbose", action="store_true",
                         help="also Ray's own INFO lines, its progress bars and every "
                              "worker's output, prefixed (pid=..., ip=...)")
    command.add_argument("--progress", choices=terminal.PROGRESS_MODES, default="auto",
                         help="auto (default): a bar with an ETA where stderr is a terminal, "
                              "else a log line at each tenth of the work; bar, log or off")


def _add_serve(commands: argparse._SubParsersAction) -> None:
    srv = commands.add_parser("serve", help="an OpenAI-compatible endpoint for a checkpoint "
                                            "(Ray Serve; the HF engine, or vLLM on GPUs or CPUs)")
    srv.add_argument("checkpoint", help="a model directory, e.g. runs/miniature/temporal/"
                                        "iter_1/model")
    srv.add_argument("--name", help="the model id clients send (default: the directory name)")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--engine", choices=["hf", "vllm"], default="hf")
    srv.add_argument("--tensor-parallel-size", type=int, default=1)
    srv.add_argument("--device", choices=["auto", "gpu", "cpu"], default="auto",
                     help="vllm: GPUs or vLLM's CPU build; auto: GPUs when the cluster has "
                          "any (give gpu where an autoscaler adds GPU nodes on demand)")
    srv.add_argument("--api-key-env", metavar="NAME",
                     help="require 'Authorization: Bearer <key>', the key read from the "
                          "environment variable NAME at start (hf engine only)")
    srv.add_argument("--max-batch-size", type=int, default=16,
                     help="hf: concurrent requests gathered into one engine call (default 16)")
    srv.add_argument("--batch-wait-timeout-s", type=float, default=0.05,
                     help="hf: how long the first request of a batch waits for others "
                          "(default 0.05; a lone request's latency grows by as much)")


def _add_prepare_data(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from temporal_ray.data_recipe.arguments import add_arguments

    prep = commands.add_parser("prepare-data", help="IFT, EFT and the iterations' prompt "
                               "files from Open Assistant and UltraFeedback (method.md)")
    add_arguments(prep)
    return prep


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="temporal-ray", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = _config_command(commands, "run", "run or resume an experiment", RESUME_HELP,
                          overrides_help="dotted overrides, e.g. dpo.beta=0.2")
    run.add_argument("--until", metavar="STAGE",
                     help="stop once this stage has finished, e.g. iter_0/pairs_anchored")
    run.add_argument("--redo", metavar="STAGE",
                     help="first delete this finished stage and every later one")
    sft = _config_command(commands, "sft", "make M0 by supervised fine-tuning (IFT + EFT)",
                          "resume even though the sft config differs from the run "
                          "directory's")
    miniature = _config_command(commands, "miniature", "the paper in miniature: tiny model, "
                                "synthetic tasks, both methods, a report", RESUME_HELP)
    study = _config_command(commands, "study", "the miniature over N seeds: means, 95% "
                                               "bootstrap intervals, the paired comparison",
                            "resume even though the config differs from the study's")
    study.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    study.add_argument("--out", help="the study directory (default: storage.run_dir + "
                                     "'-study'); seed s runs in OUT/seed_<s>")
    evaluate = _config_command(commands, "eval", "every checkpoint of a run against a "
                               "reference: win rates, HumanEval, lm-eval; table and plot",
                               "resume even though the eval section differs from the one "
                               "the evaluation directory was started with")
    for works in (run, sft, miniature, study, evaluate, _add_prepare_data(commands)):
        _add_terminal_options(works)
    plan = _config_command(commands, "plan", "per-GPU memory of a training stage; exit 3 if "
                                             "it does not fit")
    plan.add_argument("--stage", choices=["dpo", "sft"], default="dpo")
    _config_command(commands, "show-config", "print the resolved config")
    _add_serve(commands)
    status = commands.add_parser("status", help="a run's stages (finished, running, remaining) "
                                                "and its lock, from its directory alone")
    status.add_argument("run_dir", help="a run directory: a path or a URI (s3://...); a "
                                        "miniature's root lists its parts")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    tiny = commands.add_parser("tiny-model", help="build the tiny embedded model")
    tiny.add_argument("out_dir")
    return parser


def _error(err: Exception) -> int:
    print(f"error: {err}", file=sys.stderr)
    return 2


def _load(args: argparse.Namespace) -> MiniatureRunConfig:
    # The CLI is the one floor above the miniature: every command reads its file with the
    # miniature's schema, so configs/miniature.yaml works with each of them.
    return load_config(args.config, args.overrides, schema=MiniatureRunConfig)


def _tiny_model(args: argparse.Namespace) -> int:
    from temporal_ray.miniature.tiny_model import build_tiny_model

    print(f"tiny model written to {build_tiny_model(args.out_dir)}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from temporal_ray.engines.preflight import ModelCheckError
    from temporal_ray.serve import ApiKeyError, serve_checkpoint
    from temporal_ray.storage.hub import HubModelError

    try:
        serve_checkpoint(args.checkpoint, args.name, args.engine, args.host, args.port,
                         args.tensor_parallel_size, device=args.device,
                         api_key_env=args.api_key_env,
                         cpu_options={"max_batch_size": args.max_batch_size,
                                      "batch_wait_timeout_s": args.batch_wait_timeout_s})
    except (ModelCheckError, ApiKeyError, HubModelError) as err:
        return _error(err)
    return 0


def _status(args: argparse.Namespace) -> int:
    """0 once the directory is read, whatever the run's state (the state is in the output);
    2 when there is no such directory."""
    from temporal_ray.run.status import NotARunError, read_status
    from temporal_ray.run.status_table import format_status

    try:
        status = read_status(args.run_dir)
    except NotARunError as err:
        return _error(err)
    print(status.to_json() if args.json else format_status(status))
    return 0


def _show_config(args: argparse.Namespace) -> int:
    print(_load(args).to_yaml(), end="")
    return 0


def _plan(args: argparse.Namespace) -> int:
    cfg = _load(args)
    from temporal_ray.training.plan import plan_stage

    stage_plan = plan_stage(cfg, args.stage)
    training = cfg.dpo if args.stage == "dpo" else cfg.sft
    model = cfg.model.path if args.stage == "dpo" else cfg.sft.base_model
    print(f"memory plan: {args.stage} stage of {model}, {training.workers} GPUs, ZeRO-"
          f"{training.zero_stage}{', LoRA' if training.lora.enabled else ''}")
    print(stage_plan.table())
    return 0 if stage_plan.fits else 3


def _exit_code(work: Callable[[], object]) -> int:
    """Do a command's work: 0, or 2 with the message of an error that stops a run, an SFT or
    an evaluation and says what to do (rather than a traceback)."""
    from temporal_ray.engines.preflight import ModelCheckError
    from temporal_ray.evaluate.checkpoints import NoCheckpointsError
    from temporal_ray.evaluate.humaneval import HumanEvalMissingError
    from temporal_ray.run.iteration import JudgeFailureError, NoPairsError
    from temporal_ray.run.session import ConfigChangedError
    from temporal_ray.storage.hub import HubModelError
    from temporal_ray.storage.lock import RunLockedError
    from temporal_ray.storage.run_dir import UnknownStageError
    from temporal_ray.training.plan import PlanError

    try:
        work()
    except (ConfigChangedError, NoPairsError, NoCheckpointsError, JudgeFailureError,
            ModelCheckError, RunLockedError, PlanError, UnknownStageError, HubModelError,
            HumanEvalMissingError) as err:
        return _error(err)
    except Exception as err:
        return _write_failure(err)
    return 0


def _write_failure(err: Exception) -> int:
    """2 with one message for a full disk or a file size limit (the stage, the cause, what
    to do; its traceback at DEBUG); any other error is raised on."""
    from temporal_ray.storage.write_failure import StageWriteError, find_write_failure

    failure = find_write_failure(err)
    if failure is None:
        raise err
    logger.debug("the write that failed:", exc_info=err)
    if not isinstance(err, StageWriteError):  # a file outside a stage: config, summary, tracking
        err = StageWriteError("outside a stage", failure, "a file of the run")
    return _error(err)


def _run(args: argparse.Namespace) -> int:
    cfg = _load(args)
    from temporal_ray.run.driver import run_experiment

    return _exit_code(lambda: run_experiment(cfg, force=args.force, until=args.until,
                                              redo=args.redo))


def _sft(args: argparse.Namespace) -> int:
    cfg = _load(args)
    from temporal_ray.run.sft import run_sft

    return _exit_code(lambda: run_sft(cfg, force=args.force))


def _miniature(args: argparse.Namespace) -> int:
    cfg = _load(args)
    from temporal_ray.miniature.recipe import run_miniature

    return _exit_code(lambda: run_miniature(cfg, force=args.force))


def _study(args: argparse.Namespace) -> int:
    cfg = _load(args)
    from temporal_ray.miniature.study import run_study

    return _exit_code(lambda: run_study(cfg, seeds=args.seeds, out=args.out, force=args.force))


def _eval(args: argparse.Namespace) -> int:
    cfg = _load(args)
    from temporal_ray.evaluate.driver import run_eval

    return _exit_code(lambda: run_eval(cfg, force=args.force))


def _prepare_data(args: argparse.Namespace) -> int:
    from temporal_ray.core.rubric import load_template
    from temporal_ray.data_recipe.arguments import recipe_options
    from temporal_ray.data_recipe.errors import DataRecipeError
    from temporal_ray.data_recipe.prepare import prepare_data

    try:
        template = load_template(args.judge_template)
        manifest = prepare_data(args.oasst, args.ultrafeedback, args.out, recipe_options(args),
                                template, force=args.force)
    except (DataRecipeError, ValueError, OSError) as err:
        return _error(err)
    counts = manifest["counts"]
    terminal.echo(f"{args.out}: {counts['ift']} IFT, {counts['eft']} EFT, {counts['prompts']} "
                  "prompts (manifest.json: the inputs, the counts, the drops)")
    return 0


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": _run, "sft": _sft, "miniature": _miniature, "study": _study,
    "eval": _eval, "plan": _plan,
    "show-config": _show_config, "serve": _serve, "tiny-model": _tiny_model,
    "status": _status, "prepare-data": _prepare_data,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Every command logs through the package's loggers; those that run work take the options.
    terminal.configure(getattr(args, "log_level", "INFO"), getattr(args, "verbose", False),
                       getattr(args, "progress", "auto"))
    try:
        return HANDLERS[args.command](args)
    except (ConfigError, PromptFileError) as err:  # a config or prompt file to fix: exit 2
        return _error(err)


if __name__ == "__main__":
    sys.exit(main())
