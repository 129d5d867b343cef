"""`temporal-ray`: the command line.

    temporal-ray run CONFIG [section.field=value ...] [--force] [--until STAGE] [--redo STAGE]
    temporal-ray sft CONFIG [overrides ...] [--force]     M0 = SFT(sft.base_model, sft.data)
    temporal-ray miniature CONFIG [overrides ...] [--force]   the paper in miniature (make run)
    temporal-ray eval CONFIG [overrides ...] [--force]   checkpoints vs M0: win rates, HumanEval
    temporal-ray plan CONFIG [overrides ...] [--stage dpo|sft]   per-GPU memory, before a job
    temporal-ray serve CHECKPOINT [--name N] [--port P] [--engine hf|vllm]   OpenAI API
    temporal-ray tiny-model OUT_DIR
    temporal-ray show-config CONFIG [overrides ...]
"""

from __future__ import annotations

import argparse
import sys

from temporal_ray.config import ConfigError, load_config
from temporal_ray.core.prompts import PromptFileError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="temporal-ray", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run or resume an experiment")
    run.add_argument("config")
    run.add_argument("overrides", nargs="*", help="dotted overrides, e.g. dpo.beta=0.2")
    run.add_argument("--force", action="store_true",
                     help="resume even though the config differs from the run directory's")
    run.add_argument("--until", metavar="STAGE",
                     help="stop once this stage has finished, e.g. iter_0/pairs_anchored")
    run.add_argument("--redo", metavar="STAGE",
                     help="first delete this finished stage and every later one")
    sft = commands.add_parser("sft", help="make M0 by supervised fine-tuning (IFT + EFT)")
    sft.add_argument("config")
    sft.add_argument("overrides", nargs="*")
    sft.add_argument("--force", action="store_true",
                     help="resume even though the sft config differs from the run directory's")
    mini = commands.add_parser("miniature", help="the paper in miniature: tiny model, "
                                                 "synthetic tasks, both methods, a report")
    mini.add_argument("config")
    mini.add_argument("overrides", nargs="*")
    mini.add_argument("--force", action="store_true",
                      help="resume even though the config differs from the run directory's")
    evl = commands.add_parser("eval", help="every checkpoint of a run against a reference: "
                                           "win rates, HumanEval, lm-eval; table and plot")
    evl.add_argument("config")
    evl.add_argument("overrides", nargs="*")
    evl.add_argument("--force", action="store_true",
                     help="resume even though the eval section differs from the one the "
                          "evaluation directory was started with")
    plan = commands.add_parser("plan", help="per-GPU memory of a training stage; exit 3 if "
                                            "it does not fit")
    plan.add_argument("config")
    plan.add_argument("overrides", nargs="*")
    plan.add_argument("--stage", choices=["dpo", "sft"], default="dpo")
    show = commands.add_parser("show-config", help="print the resolved config")
    show.add_argument("config")
    show.add_argument("overrides", nargs="*")
    srv = commands.add_parser("serve", help="an OpenAI-compatible endpoint for a checkpoint "
                                            "(Ray Serve; CPU: the HF engine, GPU: vLLM)")
    srv.add_argument("checkpoint", help="a model directory, e.g. runs/miniature/temporal/"
                                        "iter_1/model")
    srv.add_argument("--name", help="the model id clients send (default: the directory name)")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--engine", choices=["hf", "vllm"], default="hf")
    srv.add_argument("--tensor-parallel-size", type=int, default=1)
    tiny = commands.add_parser("tiny-model", help="build the tiny embedded model")
    tiny.add_argument("out_dir")
    args = parser.parse_args(argv)

    try:
        if args.command == "tiny-model":
            from temporal_ray.miniature.tiny_model import build_tiny_model

            print(f"tiny model written to {build_tiny_model(args.out_dir)}")
            return 0
        if args.command == "serve":
            from temporal_ray.engines.preflight import ModelCheckError
            from temporal_ray.serve import serve_checkpoint

            try:
                serve_checkpoint(args.checkpoint, args.name, args.engine, args.host, args.port,
                                 args.tensor_parallel_size)
            except ModelCheckError as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
            return 0
        cfg = load_config(args.config, args.overrides)
        if args.command == "show-config":
            print(cfg.to_yaml(), end="")
            return 0
        if args.command == "plan":
            from temporal_ray.training.plan import plan_stage

            stage_plan = plan_stage(cfg, args.stage)
            training = cfg.dpo if args.stage == "dpo" else cfg.sft
            model = cfg.model.path if args.stage == "dpo" else cfg.sft.base_model
            print(f"memory plan: {args.stage} stage of {model}, {training.workers} GPUs, ZeRO-"
                  f"{training.zero_stage}{', LoRA' if training.lora.enabled else ''}")
            print(stage_plan.table())
            return 0 if stage_plan.fits else 3
        from temporal_ray.engines.preflight import ModelCheckError
        from temporal_ray.evaluate.checkpoints import NoCheckpointsError
        from temporal_ray.run.driver import run_experiment
        from temporal_ray.run.iteration import JudgeFailureError, NoPairsError
        from temporal_ray.run.session import ConfigChangedError
        from temporal_ray.run.sft import run_sft
        from temporal_ray.storage.lock import RunLockedError
        from temporal_ray.storage.run_dir import UnknownStageError
        from temporal_ray.training.plan import PlanError

        try:
            if args.command == "sft":
                run_sft(cfg, force=args.force)
            elif args.command == "miniature":
                from temporal_ray.miniature.recipe import run_miniature

                run_miniature(cfg, force=args.force)
            elif args.command == "eval":
                from temporal_ray.evaluate.driver import run_eval

                run_eval(cfg, force=args.force)
            else:
                run_experiment(cfg, force=args.force, until=args.until, redo=args.redo)
        except (ConfigChangedError, NoPairsError, NoCheckpointsError, JudgeFailureError,
                ModelCheckError, RunLockedError, PlanError, UnknownStageError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    except (ConfigError, PromptFileError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
